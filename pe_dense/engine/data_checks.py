"""Bad-input handling for detection pipelines, as mmdet transforms (registered in mmdet's ``TRANSFORMS``).

What mmdet/mmcv already do, and we rely on:
- ``CocoDataset.parse_data_info`` silently drops annotations whose box lies fully outside the image, has zero
  area or a side < 1 px; ``filter_cfg=dict(filter_empty_gt=True)`` drops training images with no annotation.
- ``LoadImageFromFile(color_type='color')`` decodes grayscale and RGBA files to 3-channel BGR.
- When a training pipeline returns ``None``, mmengine's ``BaseDataset`` fetches another random sample (up to
  ``max_refetch`` times); a test pipeline returning ``None`` is an error.

What these add: a named warning (once per file) instead of silence or an ``AssertionError``, skipping in training
and a clear error in testing; boxes partly outside the image are clipped (mmdet keeps them as they are);
non-finite boxes are dropped; a label outside the model's classes is an error naming the fix.

:func:`check_coco_file` / :func:`check_config_annotations` validate COCO-format annotation files before mmdet reads
them (tools/train.py and tools/test.py call them): mmdet raises a bare ``KeyError`` deep inside its parser for a
missing key, and silently drops annotations of undefined categories or with NaN boxes.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from typing import Dict, Iterator, List, Optional, Set, Tuple

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine.logging import print_log

from pe_dense.data.images import BadImageError, truncation_reason
from pe_dense.errors import PEDenseError


class AnnotationError(PEDenseError, ValueError):
    """An annotation file (or a label in it) that cannot be used as it is; the message names the entries."""

_warned: Set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print_log(message, logger="current", level=logging.WARNING)


def to_three_channels(img: np.ndarray) -> np.ndarray:
    """HxW or HxWx1 -> HxWx3 (gray replicated); HxWx4 -> HxWx3 (alpha dropped); HxWx3 unchanged."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"cannot use an image of shape {img.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return img[:, :, :3] if img.shape[2] == 4 else img


def _is_16bit_gray_png(path) -> bool:
    """A local PNG whose IHDR says bit depth 16, colour type grey or grey + alpha."""
    if "://" in str(path):
        return False
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (0, 4)


def _local_file_problem(path) -> str:
    """Why a local path cannot be an image file ('' if it may be, or is remote): decoders say it less clearly."""
    path = str(path)
    if "://" in path:
        return ""
    if os.path.isdir(path):
        return "it is a directory, not an image file"
    if not os.path.exists(path):
        return "file not found"
    return "the file is empty (0 bytes)" if os.path.getsize(path) == 0 else ""


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that names unreadable images and skips them in training.

    Args:
        skip_bad: return ``None`` (mmengine then fetches another sample) with a warning instead of raising.
            Use ``True`` in training pipelines, ``False`` in val/test pipelines (every image must be scored).
        max_aspect_ratio: images whose long side exceeds this many short sides count as bad. mmcv's keep-ratio
            ``Resize`` scales the short side below one pixel for such strips (a 10000x10 image at scale 64 fails
            in ``cv2.resize``); 100 keeps a 10 px short side at scale 1024. ``None`` disables the check.
        other args: as mmcv's ``LoadImageFromFile``.
    """

    def __init__(self, skip_bad: bool = True, max_aspect_ratio: Optional[float] = 100.0, **kwargs):
        super().__init__(**kwargs)
        self.skip_bad = skip_bad
        self.max_aspect_ratio = max_aspect_ratio

    def _fail(self, path: str, reason: str) -> None:
        if not self.skip_bad:
            raise BadImageError(f"cannot read image {path}: {reason}. Fix or remove the file, or drop its entry "
                             "from the annotation file")
        _warn_once(path, f"skipping image {path}: {reason} (training continues with another sample)")

    def transform(self, results: dict) -> Optional[dict]:
        path = results["img_path"]
        problem = _local_file_problem(path)
        if problem:
            return self._fail(path, problem)
        try:
            loaded = super().transform(results)
        except FileNotFoundError:
            return self._fail(path, "file not found")
        except AssertionError:  # mmcv: decoder returned None
            reason = truncation_reason(open(path, "rb").read()) if "://" not in str(path) else ""
            return self._fail(path, "the file is not a decodable image (" + (reason or "corrupt or wrong format")
                              + ")")
        except Exception as err:  # noqa: BLE001 - any decoder error: name it, then skip or raise
            if "cannot identify image file" in str(err):  # PIL's message names a BytesIO object, not the file
                return self._fail(path, "the file is not a decodable image (corrupt or wrong format)")
            return self._fail(path, f"{type(err).__name__}: {err}")
        if loaded is None:  # ignore_empty=True swallowed an error
            return self._fail(path, "the file is missing or unreadable")
        if self.imdecode_backend == "pillow" and _is_16bit_gray_png(path):
            # mmcv's pillow path converts 'I;16' with PIL's convert('RGB'), which clips every value above 255 to
            # white; decode such files with OpenCV, which keeps the high byte (as the cv2 backend does).
            import mmcv
            img = mmcv.imfrombytes(open(path, "rb").read(), flag=self.color_type, backend="cv2")
            loaded["img"] = img.astype(np.float32) if self.to_float32 else img
        img = loaded["img"]
        if img.ndim != 3 or img.shape[2] != 3:
            img = to_three_channels(img)
            loaded["img"] = img
        h, w = img.shape[:2]
        if self.max_aspect_ratio is not None and max(h, w) > self.max_aspect_ratio * min(h, w):
            return self._fail(path, f"it is {w}x{h}, longer than max_aspect_ratio={self.max_aspect_ratio:g} times "
                              "its short side, so resizing leaves less than a pixel; crop or pad it (or raise "
                              "max_aspect_ratio in the pipeline's CheckedLoadImageFromFile)")
        ann_h, ann_w = results.get("height"), results.get("width")
        if ann_h is not None and ann_w is not None and (ann_h, ann_w) != (h, w):
            _warn_once(path + ":size", f"image {path} is {w}x{h} but its annotation says {ann_w}x{ann_h}; "
                       "boxes may be misplaced (EXIF rotation or a resized file?)")
        return loaded


@TRANSFORMS.register_module()
class SanitizeBoxes(BaseTransform):
    """Clip boxes to the image, drop non-finite or (after clipping) smaller than ``min_size`` boxes with their
    labels/masks/ignore flags, and check labels against ``num_classes``. Put it right after ``LoadAnnotations``.

    Args:
        min_size: smallest kept width and height in pixels after clipping.
        num_classes: if set, a label outside ``[0, num_classes)`` raises (the dataset's classes and the
            model's ``num_classes`` disagree).
    """

    def __init__(self, min_size: float = 1.0, num_classes: Optional[int] = None):
        self.min_size = float(min_size)
        self.num_classes = num_classes

    def transform(self, results: dict) -> dict:
        boxes = results.get("gt_bboxes")
        if boxes is None or len(boxes) == 0:
            return results
        path = results.get("img_path", "?")
        labels = results.get("gt_bboxes_labels")
        if self.num_classes is not None and labels is not None and len(labels):
            bad = (labels < 0) | (labels >= self.num_classes)
            if bad.any():
                raise AnnotationError(f"{path}: labels {sorted(set(labels[bad].tolist()))} are outside the model's "
                                 f"{self.num_classes} classes; set num_classes in the bbox/mask heads to the "
                                 "number of dataset classes (metainfo.classes)")
        h, w = results["img"].shape[:2] if "img" in results else results["img_shape"]
        t = boxes.tensor
        finite = t.isfinite().all(dim=1)
        outside = finite & ((t[:, 0] < 0) | (t[:, 1] < 0) | (t[:, 2] > w) | (t[:, 3] > h))
        boxes.clip_([h, w])
        t = boxes.tensor
        keep = finite & ((t[:, 2] - t[:, 0]) >= self.min_size) & ((t[:, 3] - t[:, 1]) >= self.min_size)
        n_drop, n_clip = int((~keep).sum()), int((outside & keep).sum())
        if n_drop or n_clip:
            _warn_once(path + ":boxes", f"{path}: clipped {n_clip} box(es) extending outside the {w}x{h} image, "
                       f"dropped {n_drop} non-finite or empty box(es)")
        if n_drop:
            keep_np = keep.numpy()
            for key in ("gt_bboxes", "gt_bboxes_labels", "gt_masks", "gt_ignore_flags"):
                if key in results:
                    results[key] = results[key][keep_np] if key != "gt_bboxes" else results[key][keep]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_size={self.min_size}, num_classes={self.num_classes})"


# ------------------------------------------------------------------------------------------------ COCO files
_REQUIRED = {"images": ("id", "width", "height"), "annotations": ("id", "image_id", "category_id", "bbox", "area"),
             "categories": ("id", "name")}


def _finite_numbers(values) -> bool:
    return isinstance(values, list) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _listing(ids: List, n: int = 5) -> str:
    return ", ".join(map(str, ids[:n])) + (f" ... (+{len(ids) - n} more)" if len(ids) > n else "")


def check_coco_file(path: str, training: bool = True, need_masks: bool = False) -> Dict[str, int]:
    """Validate a COCO-format annotation file; return counts of what mmdet will drop (each also warned once).

    Errors (mmdet would crash deep inside, or learn/score the wrong thing): not JSON, a missing list or entry key,
    non-finite numbers, category ids absent from ``categories``, duplicated ids, an empty annotation list in a
    training set, polygons with fewer than 3 points in an evaluation set (pycocotools' ``frPyObjects`` raises on
    them: 4 numbers are taken for a box, fewer are "not supported"), no ``segmentation`` when ``need_masks`` (a
    pipeline with ``with_mask=True``: mmdet's ``LoadAnnotations`` fails with ``KeyError: 'mask'``).
    Warnings (mmdet drops them, as detectron2 does): boxes of zero or negative size; in training, polygons with
    fewer than 3 points (mmdet ignores that instance); annotations of unknown images.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"annotation file {path!r} is a directory; set ann_file to the JSON file in it")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file {path!r} not found; check data_root and ann_file "
                                "(--cfg-options data_root=...)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"annotation file {path} is not valid JSON ({err}); it is truncated or not a COCO "
                              "file: write it again") from err
    fix = "fix or remove these entries in the file"
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in _REQUIRED):
        lacking = [k for k in _REQUIRED if not isinstance(data, dict) or not isinstance(data.get(k), list)]
        raise AnnotationError(f"annotation file {path} lacks the list(s) {lacking}: a COCO file is a JSON object "
                              "with 'images', 'annotations' and 'categories' lists (an empty list is allowed)")
    for section, keys in _REQUIRED.items():
        for i, entry in enumerate(data[section]):
            lacking = [k for k in keys if not isinstance(entry, dict) or k not in entry]
            if section == "images" and isinstance(entry, dict) and not ({"file_name", "coco_url"} & set(entry)):
                lacking.append("file_name")
            if lacking:
                name = entry.get("id", f"#{i}") if isinstance(entry, dict) else f"#{i}"
                raise AnnotationError(f"annotation file {path}: {section[:-1]} {name} lacks {lacking} (required by "
                                      f"mmdet: {section} entries need {list(keys)}); {fix}")
        counts = Counter(str(e["id"]) for e in data[section])
        if len(counts) != len(data[section]):
            dup = sorted(i for i, n in counts.items() if n > 1)
            raise AnnotationError(f"annotation file {path}: duplicated {section[:-1]} ids {_listing(dup)}; "
                                  "ids must be unique")
    anns, image_ids = data["annotations"], {e["id"] for e in data["images"]}
    if not anns and training:
        raise AnnotationError(f"annotation file {path} has an empty 'annotations' list: nothing to train on. Point "
                              "ann_file at the file with the annotations (an empty list is fine only for test sets)")
    cat_ids = {c["id"] for c in data["categories"]}
    problems = {k: [] for k in ("non_finite", "unknown_category", "degenerate", "short_polygon", "orphan")}
    no_mask = [a["id"] for a in anns if need_masks and not a.get("iscrowd") and not a.get("segmentation")]
    if no_mask:
        raise AnnotationError(f"annotation file {path}: annotations {_listing(no_mask)} have no 'segmentation', but "
                              "the pipeline loads masks (LoadAnnotations with_mask=True): add polygons or RLE masks, "
                              "or train a box-only model")
    for ann in anns:
        box, seg = ann["bbox"], ann.get("segmentation")
        polygons = seg if isinstance(seg, list) else []
        if not (_finite_numbers(box) and len(box) == 4 and all(_finite_numbers(p) for p in polygons)
                and isinstance(ann["area"], (int, float)) and math.isfinite(ann["area"])):
            problems["non_finite"].append(ann["id"])
            continue
        if ann["category_id"] not in cat_ids:
            problems["unknown_category"].append(ann["id"])
        if box[2] <= 0 or box[3] <= 0:
            problems["degenerate"].append(ann["id"])
        if any(len(p) < 6 or len(p) % 2 for p in polygons):
            problems["short_polygon"].append(ann["id"])
        if ann["image_id"] not in image_ids:
            problems["orphan"].append(ann["id"])
    _raise_or_warn(path, problems, training, sorted(cat_ids))
    return {k: len(v) for k, v in problems.items()}


def _raise_or_warn(path: str, problems: Dict[str, List], training: bool, cat_ids: List) -> None:
    fix = "fix or remove these annotations"
    if problems["non_finite"]:
        raise AnnotationError(f"annotation file {path}: annotations {_listing(problems['non_finite'])} have a bbox, "
                              f"area or polygon that is not a list of finite numbers (NaN/inf/text); {fix}")
    if problems["unknown_category"]:
        raise AnnotationError(f"annotation file {path}: annotations {_listing(problems['unknown_category'])} use "
                              f"category ids absent from 'categories' (ids there: {_listing(cat_ids, 20)}); add "
                              f"the categories or {fix}")
    if problems["short_polygon"] and not training:
        raise AnnotationError(f"annotation file {path}: annotations {_listing(problems['short_polygon'])} have "
                              "polygons with fewer than 3 points, which pycocotools cannot score; " + fix)
    notes = {"degenerate": "boxes of zero or negative size (mmdet drops them)",
             "short_polygon": "polygons with fewer than 3 points (mmdet ignores these instances)",
             "orphan": "an image_id absent from 'images' (never used)"}
    for key, text in notes.items():
        if problems[key]:
            _warn_once(f"{path}:{key}", f"annotation file {path}: {len(problems[key])} annotation(s) with {text}, "
                       f"e.g. ids {_listing(problems[key])}")


def _coco_datasets(node) -> Iterator[dict]:
    """Every dataset dict with a JSON ``ann_file`` inside a (possibly wrapped) dataset config."""
    if isinstance(node, dict):
        if str(node.get("ann_file", "")).endswith(".json"):
            yield node
        for key in ("dataset", "datasets"):
            children = node.get(key)
            for child in children if isinstance(children, list) else [children]:
                yield from _coco_datasets(child)


def coco_annotation_files(cfg, loaders: Tuple[str, ...]) -> List[Tuple[str, bool, bool]]:
    """(path, is_training, needs_masks) of the COCO-style annotation files the given dataloaders of ``cfg`` read."""
    out = []
    for loader in loaders:
        for ds in _coco_datasets((cfg.get(loader) or {}).get("dataset")):
            path, root = str(ds["ann_file"]), ds.get("data_root")
            if root and not os.path.isabs(path):
                path = os.path.join(str(root), path)
            masks = any(isinstance(t, dict) and t.get("type") in ("LoadAnnotations", "mmdet.LoadAnnotations")
                        and t.get("with_mask") for t in ds.get("pipeline") or [])
            entry = (path, loader == "train_dataloader", bool(masks))
            if "://" not in path and entry not in out:
                out.append(entry)
    return out


def check_config_annotations(cfg, loaders: Tuple[str, ...] = ("train_dataloader", "val_dataloader")) -> None:
    """:func:`check_coco_file` on every COCO-style annotation file of ``cfg``'s dataloaders (skipped when the
    config has no such loader, e.g. a dataset of another format)."""
    for path, training, need_masks in coco_annotation_files(cfg, loaders):
        check_coco_file(path, training=training, need_masks=need_masks)
