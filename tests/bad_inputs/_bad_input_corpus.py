"""Writes the bad-input corpus (issue 14) into a folder at test time; nothing binary is committed.

Layout under ROOT:
  images/      JPEG/PNG cases cut from scikit-image's astronaut photo (``IMAGE_CASES`` says what each should give)
  coco/        images/good.jpg + annotations/<case>.json, one defect per file (``COCO_CASES``)
  checkpoints/ 1-block PE-Spatial-T16 towers and broken or foreign files (``CHECKPOINT_CASES``)
Each *_CASES dict maps a file name to the expected outcome: "ok" or the substring the one error must contain.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
from typing import Dict

import numpy as np

TOWER = "PE-Spatial-T16-512"
OTHER_TOWER = "PE-Spatial-S16-512"
TINY = dict(layers=1)  # 1-block towers: the files stay small, loading them stays fast

# name -> expected: "ok" (a correct RGB image) or a regular expression the error message matches.
IMAGE_CASES: Dict[str, str] = {
    "good.jpg": "ok", "good.png": "ok", "gray.png": "ok", "gray16.png": "ok", "rgb16.png": "ok", "rgba.png": "ok",
    "cmyk.jpg": "ok", "exif_rotated_6.jpg": "ok", "one_pixel.png": "ok", "wide_10000x10.png": "ok",
    "truncated.jpg": r"could not be decoded \(truncated JPEG", "truncated.png": r"could not be decoded \(truncated PNG",
    "corrupt.jpg": "could not be decoded", "corrupt.png": "could not be decoded",
    "empty.jpg": r"is empty \(0 bytes\)", "text_renamed.jpg": "could not be decoded",
    "a_directory.jpg": "is a directory",
}
COCO_CASES: Dict[str, str] = {
    "good.json": "ok",
    "zero_size_box.json": "ok", "negative_size_box.json": "ok",  # warned, dropped by mmdet
    "missing_images_list.json": r"lacks the list\(s\) \['images'\]",
    "missing_bbox.json": r"annotation 1 lacks \['bbox'\]",
    "missing_file_name.json": r"image 1 lacks \['file_name'\]",
    "nan_coordinates.json": "annotations 1 have a bbox, area or polygon that is not a list of finite numbers",
    "short_polygon.json": "ok",  # training: warned, mmdet ignores the instance; evaluation: an error
    "unknown_category.json": r"annotations 2 use category ids absent from 'categories'",
    "empty_annotations.json": "empty 'annotations' list",
    "not_json.json": "is not valid JSON",
    "missing_segmentation.json": "annotations 1 have no 'segmentation', but the pipeline loads masks",
}
CHECKPOINT_CASES: Dict[str, str] = {
    "good.pt": "ok", "good_timm.safetensors": "ok", "good_nested_module.pth": "ok",
    "truncated.pt": "is truncated", "truncated.safetensors": "not a readable .safetensors",
    "empty.pt": r"is empty \(0 bytes\)", "text.pt": "is not a torch file", "a_directory.pt": "is a directory",
    "other_size.pt": f"(?s)mis-shaped.*looks like {OTHER_TOWER}",
    "detectron2_layout.pth": "(?s)detectron2 Mask R-CNN checkpoint.*--kind d2-mask-rcnn",
    "deta_layout.pth": "(?s)DETA checkpoint.*--kind deta",
    "untrusted_pickle.pth": r"(?s)argparse.Namespace.*--trusted",
}


def photo(h: int = 48, w: int = 64) -> np.ndarray:
    """An HxWx3 uint8 crop of a real photo with a saturated red top-left quadrant (to read orientation off)."""
    import skimage.data

    img = np.ascontiguousarray(skimage.data.astronaut()[100:100 + h, 150:150 + w])
    img[: h // 2, : w // 2] = (255, 0, 0)
    return img


def write_images(root: str) -> str:
    import cv2
    from PIL import Image

    os.makedirs(root, exist_ok=True)
    p = lambda name: os.path.join(root, name)  # noqa: E731
    img = photo()
    Image.fromarray(img).save(p("good.jpg"), quality=95)
    Image.fromarray(img).save(p("good.png"))
    Image.fromarray(img).convert("L").save(p("gray.png"))
    gray16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)  # values up to 64491
    cv2.imwrite(p("gray16.png"), gray16)
    cv2.imwrite(p("rgb16.png"), img[..., ::-1].astype(np.uint16) * 257)  # 8-bit values scaled to 16 bits
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    rgba[:, : img.shape[1] // 4, 3] = 0  # a transparent left strip over the real colours
    Image.fromarray(rgba, "RGBA").save(p("rgba.png"))
    Image.fromarray(img).convert("CMYK").save(p("cmyk.jpg"), quality=95)
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation: the stored rows are the displayed columns (rotate 90 degrees clockwise)
    im.save(p("exif_rotated_6.jpg"), exif=exif, quality=95)
    Image.fromarray(np.array([[[10, 200, 30]]], np.uint8)).save(p("one_pixel.png"))
    wide = np.repeat(np.linspace(0, 255, 10000, dtype=np.uint8)[None, :, None], 10, 0).repeat(3, 2)
    Image.fromarray(wide).save(p("wide_10000x10.png"))
    jpg, png = open(p("good.jpg"), "rb").read(), open(p("good.png"), "rb").read()
    open(p("truncated.jpg"), "wb").write(jpg[: len(jpg) // 2])
    open(p("truncated.png"), "wb").write(png[: len(png) // 2])
    rng = np.random.default_rng(0)
    open(p("corrupt.jpg"), "wb").write(jpg[:20] + rng.integers(0, 256, len(jpg) - 20, dtype=np.uint8).tobytes())
    bad_png = bytearray(png)
    bad_png[16:24] = b"\x00" * 8  # IHDR width and height 0, its CRC no longer matches
    open(p("corrupt.png"), "wb").write(bytes(bad_png))
    open(p("empty.jpg"), "wb").close()
    with open(p("text_renamed.jpg"), "w") as f:
        f.write("this is a text file with a .jpg name\n")
    os.makedirs(p("a_directory.jpg"), exist_ok=True)
    return root


def _coco_base() -> dict:
    return {
        "images": [{"id": 1, "file_name": "good.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2.0, 3.0, 20.0, 15.0], "area": 300.0, "iscrowd": 0,
             "segmentation": [[2.0, 3.0, 22.0, 3.0, 22.0, 18.0, 2.0, 18.0]]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30.0, 20.0, 25.0, 20.0], "area": 500.0,
             "iscrowd": 0, "segmentation": [[30.0, 20.0, 55.0, 20.0, 55.0, 40.0]]},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cat"}],
    }


def write_coco(root: str) -> str:
    """coco/images/good.jpg and coco/annotations/<case>.json."""
    import shutil

    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    shutil.copy(os.path.join(write_images(os.path.join(root, "_src")), "good.jpg"), os.path.join(root, "images"))
    cases = {name: _coco_base() for name in COCO_CASES}
    cases["zero_size_box.json"]["annotations"][0]["bbox"][2] = 0.0
    cases["negative_size_box.json"]["annotations"][0]["bbox"][3] = -5.0
    del cases["missing_images_list.json"]["images"]
    del cases["missing_bbox.json"]["annotations"][0]["bbox"]
    del cases["missing_file_name.json"]["images"][0]["file_name"]
    cases["nan_coordinates.json"]["annotations"][0]["bbox"][0] = float("nan")
    cases["short_polygon.json"]["annotations"][0]["segmentation"] = [[2.0, 3.0, 22.0, 3.0]]  # 2 points
    cases["unknown_category.json"]["annotations"][1]["category_id"] = 7
    cases["empty_annotations.json"]["annotations"] = []
    del cases["missing_segmentation.json"]["annotations"][0]["segmentation"]
    for name, data in cases.items():
        path = os.path.join(root, "annotations", name)
        with open(path, "w") as f:
            if name == "not_json.json":
                f.write(json.dumps(data)[:40])  # cut mid-way
            else:
                json.dump(data, f)  # allow_nan: NaN is written as the bare token NaN, as Python's json reads it
    return root


def write_checkpoints(root: str) -> str:
    import torch

    from pe_dense.models.checkpoint import official_to_timm
    from pe_dense.models.pe import PEVisionTransformer

    os.makedirs(root, exist_ok=True)
    p = lambda name: os.path.join(root, name)  # noqa: E731
    torch.manual_seed(0)
    sd = PEVisionTransformer.from_config(TOWER, **TINY).state_dict()
    torch.save(sd, p("good.pt"))
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in official_to_timm(sd).items()}, p("good_timm.safetensors"))
    nested = {"state_dict": {"module." + k: v for k, v in sd.items()}, "meta": {"iter": 3}}
    torch.save(nested, p("good_nested_module.pth"))
    data = open(p("good.pt"), "rb").read()
    open(p("truncated.pt"), "wb").write(data[: len(data) // 2])
    st = open(p("good_timm.safetensors"), "rb").read()
    open(p("truncated.safetensors"), "wb").write(st[: len(st) // 2])
    open(p("empty.pt"), "wb").close()
    with open(p("text.pt"), "w") as f:
        f.write("not a checkpoint\n")
    os.makedirs(p("a_directory.pt"), exist_ok=True)
    torch.save(PEVisionTransformer.from_config(OTHER_TOWER, **TINY).state_dict(), p("other_size.pt"))
    d2 = {"backbone.net." + k: v for k, v in sd.items()}
    d2.update({"backbone.simfp_2.0.weight": torch.zeros(4, 4, 2, 2),
               "roi_heads.box_predictor.cls_score.weight": torch.zeros(81, 8)})
    torch.save({"model": d2}, p("detectron2_layout.pth"))
    deta = {"backbone.0.body." + k: v for k, v in sd.items()}
    deta["transformer.decoder.layers.0.norm1.weight"] = torch.ones(4)
    torch.save({"model": deta}, p("deta_layout.pth"))
    torch.save({"state_dict": copy.copy(sd), "args": argparse.Namespace(lr=0.1)}, p("untrusted_pickle.pth"))
    return root


def write_corpus(root: str) -> Dict[str, str]:
    """Write all three parts under ``root``; returns their folders by name."""
    return {"images": write_images(os.path.join(root, "images")), "coco": write_coco(os.path.join(root, "coco")),
            "checkpoints": write_checkpoints(os.path.join(root, "checkpoints"))}
