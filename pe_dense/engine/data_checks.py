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
"""
from __future__ import annotations

import logging
from typing import Optional, Set

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine.logging import print_log

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


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that names unreadable images and skips them in training.

    Args:
        skip_bad: return ``None`` (mmengine then fetches another sample) with a warning instead of raising.
            Use ``True`` in training pipelines, ``False`` in val/test pipelines (every image must be scored).
        other args: as mmcv's ``LoadImageFromFile``.
    """

    def __init__(self, skip_bad: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.skip_bad = skip_bad

    def _fail(self, path: str, reason: str) -> None:
        if not self.skip_bad:
            raise ValueError(f"cannot read image {path}: {reason}. Fix or remove the file, or drop its entry "
                             "from the annotation file")
        _warn_once(path, f"skipping image {path}: {reason} (training continues with another sample)")

    def transform(self, results: dict) -> Optional[dict]:
        path = results["img_path"]
        try:
            loaded = super().transform(results)
        except FileNotFoundError:
            return self._fail(path, "file not found")
        except AssertionError:  # mmcv: decoder returned None
            return self._fail(path, "the file is not a decodable image (corrupt or wrong format)")
        except Exception as err:  # noqa: BLE001 - any decoder error: name it, then skip or raise
            return self._fail(path, f"{type(err).__name__}: {err}")
        if loaded is None:  # ignore_empty=True swallowed an error
            return self._fail(path, "the file is missing or unreadable")
        img = loaded["img"]
        if img.ndim != 3 or img.shape[2] != 3:
            img = to_three_channels(img)
            loaded["img"] = img
        h, w = img.shape[:2]
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
                raise ValueError(f"{path}: labels {sorted(set(labels[bad].tolist()))} are outside the model's "
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
