"""Build the alignment run (student, teachers, target source, images, settings) from an mmengine config.

Config sections (see configs/align/): ``student``, ``teacher``, ``sam`` (align mode), ``sam_cache`` (optional),
``data``, ``settings`` (``AlignSettings`` fields), ``work_dir``, ``checkpoint_interval``.
"""
from __future__ import annotations

import glob
import hashlib
import os
from typing import Optional

import numpy as np
import torch

from pe_dense.models.pe import PEVisionTransformer

from .sam_targets import SAMTargets, build_sam2_teacher, tiny_sam2_overrides
from .settings import AlignSettings
from .student import build_student, init_student_from

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ImageFolder:
    """Images under ``root`` (recursive, sorted), decoded on access to uint8 (3, H, W) RGB tensors."""

    def __init__(self, root: str):
        self.paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                            if p.lower().endswith(IMAGE_EXTS))
        if not self.paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {root!r}: set data.root in the config")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)

    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.paths).encode()).hexdigest()[:16]


class SkimagePhotos(list):
    """Bundled real photos of scikit-image (demo and tests)."""

    def __init__(self, names=("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")):
        import skimage.data

        super().__init__(torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, n)()[..., :3])).permute(2, 0, 1)
                         for n in names)
        self.names = list(names)

    def fingerprint(self) -> str:
        return "skimage:" + ",".join(self.names)


def build_images(data: dict):
    kind = data.get("type", "folder")
    if kind == "folder":
        return ImageFolder(data["root"])
    if kind == "skimage":
        return SkimagePhotos(tuple(data.get("names", SkimagePhotos.__init__.__defaults__[0])))
    raise ValueError(f"data.type={kind!r} is unknown; use 'folder' (with data.root) or 'skimage'")


def build_teacher(teacher: dict) -> Optional[PEVisionTransformer]:
    if not teacher:
        return None
    model = PEVisionTransformer.from_config(teacher["model_name"], checkpoint=teacher.get("checkpoint"),
                                            **teacher.get("config_overrides", {}))
    return model.eval().requires_grad_(False)


def cache_key(cfg, images) -> dict:
    """What the SAM targets depend on: SAM, its options, the images, the views and the token grid."""
    s, sam = AlignSettings(**cfg.settings), dict(cfg.sam)
    ckpt = sam.get("checkpoint")
    return {"sam_config": sam["config"], "sam_overrides": list(sam.get("overrides", [])),
            "sam_tiny_image_size": sam.get("tiny_image_size"),
            "sam_checkpoint": os.path.basename(ckpt) if ckpt else f"random(seed={sam.get('init_seed', 0)})",
            "points_per_side": sam.get("points_per_side", 32), "mask_output": sam.get("mask_output", "single"),
            "logit_transform": sam.get("logit_transform", "clamp"), "resize": sam.get("resize", "area"),
            "images": images.fingerprint(), "image_size": s.image_size, "seed": s.seed, "aspect": list(s.aspect),
            "brightness": s.brightness, "saturation": s.saturation, "flip_p": s.flip_p}


def build_sam(sam: dict) -> SAMTargets:
    torch.manual_seed(sam.get("init_seed", 0))  # random SAM weights (tests, demo) are reproducible
    overrides = list(sam.get("overrides", []))
    if sam.get("tiny_image_size"):  # a ~3.5M-parameter random SAM 2 (tests, CPU demo)
        overrides = tiny_sam2_overrides(sam["tiny_image_size"]) + overrides
    model = build_sam2_teacher(sam["config"], sam.get("checkpoint"), overrides,
                               apply_postprocessing=sam.get("apply_postprocessing", True))
    return SAMTargets(model, sam.get("points_per_side", 32), sam.get("chunk_size", 128),
                      sam.get("mask_output", "single"), sam.get("logit_transform", "clamp"), sam.get("resize", "area"))


def build_parts(cfg) -> dict:
    """Everything the trainer needs, from the config; SAM is built only when no target cache is configured."""
    from .target_cache import SAMTargetCache

    settings = AlignSettings(**cfg.settings)
    images = build_images(cfg.data)
    st = dict(cfg.student)
    seed = st.pop("init_seed", settings.seed)  # random weights (tests, demo) are reproducible
    torch.manual_seed(seed)
    teacher = build_teacher(cfg.get("teacher"))
    from_teacher = st.pop("init_from_teacher", False)
    torch.manual_seed(seed)
    student = build_student(st.pop("core"), st.pop("checkpoint", None), **st)
    if from_teacher:  # the recipe: the student starts from the teacher's Core weights (random ones in the demo)
        init_student_from(student, teacher)
    targets: Optional[object] = None
    if settings.mode == "align":
        cache = cfg.get("sam_cache") or {}
        targets = SAMTargetCache(cache["dir"], cache_key(cfg, images)) if cache.get("dir") else build_sam(cfg.sam)
    return dict(student=student, teacher=teacher, sam_targets=targets, images=images, settings=settings)
