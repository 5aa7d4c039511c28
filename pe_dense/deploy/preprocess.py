"""Image preprocessing in numpy, equal to what the exported model saw in PyTorch, and its inverse for outputs.

``resize_bilinear`` is ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
antialias=False)`` (half-pixel centres, source index clamped at 0, no antialiasing when shrinking), which is
what ``pe_dense.data.images.preprocess`` runs; the tests compare the two on a real photo.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np


def _axis_weights(n_in: int, n_out: int):
    # float32 index arithmetic, as PyTorch's CPU kernel does for float32 images (float64 differs by ~1e-5)
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0.astype(np.float32)
    return i0, i1, frac


def resize_bilinear(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(H, W, C) or (H, W) float array -> (h, w, ...) float32, bilinear with half-pixel centres (torch's rule)."""
    h, w = (int(s) for s in size)
    img = np.asarray(img, dtype=np.float32)
    y0, y1, fy = _axis_weights(img.shape[0], h)
    x0, x1, fx = _axis_weights(img.shape[1], w)
    extra = (None,) * (img.ndim - 2)
    fy = fy[(slice(None), None) + extra]
    fx = fx[(slice(None),) + extra]
    rows = img[y0] * (1 - fy) + img[y1] * fy
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


@dataclass(frozen=True)
class Transform:
    """How an original image became the network input: ``input = original * scale (per axis), then padding at
    the bottom/right``; ``orig_size`` and ``input_size`` are (H, W)."""

    orig_size: Tuple[int, int]
    input_size: Tuple[int, int]
    scale_yx: Tuple[float, float]


def prepare(img: np.ndarray, meta: dict) -> Tuple[np.ndarray, Transform]:
    """HxWx3 uint8 RGB -> (3, H, W) float32 network input, by the metadata's ``resize`` and ``normalisation``."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {img.shape} {img.dtype}; convert "
                         "grayscale/RGBA/BGR images to RGB uint8 first")
    rule, norm = meta["resize"], meta["normalisation"]
    in_h, in_w = meta["input_size"]
    oh, ow = img.shape[:2]
    x = img.astype(np.float32) * np.float32(norm["scale"])
    if rule["mode"] == "stretch":
        x = resize_bilinear(x, (in_h, in_w))
        scale = (in_h / oh, in_w / ow)
    elif rule["mode"] == "letterbox":
        s = min(in_h / oh, in_w / ow)
        rh, rw = int(oh * s + 0.5), int(ow * s + 0.5)
        canvas = np.full((in_h, in_w, 3), rule.get("pad_value", 0.0), np.float32)
        canvas[:rh, :rw] = resize_bilinear(x, (rh, rw))
        x, scale = canvas, (rh / oh, rw / ow)
    else:
        raise ValueError(f"resize rule {rule['mode']!r} is not known to this runner (stretch, letterbox): "
                         "update pe_dense.deploy to the version that wrote the artefact")
    x = (x - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), Transform((oh, ow), (in_h, in_w), scale)


def boxes_to_original(boxes: np.ndarray, t: Transform) -> np.ndarray:
    """xyxy boxes in network-input pixels -> original-image pixels, clipped to the original image."""
    boxes = np.asarray(boxes, dtype=np.float32)
    sy, sx = t.scale_yx
    out = boxes / np.asarray([sx, sy, sx, sy], np.float32)
    out[..., 0::2] = np.clip(out[..., 0::2], 0, t.orig_size[1])
    out[..., 1::2] = np.clip(out[..., 1::2], 0, t.orig_size[0])
    return out


def feature_map_to_original(fmap: np.ndarray, t: Transform, stride: int) -> np.ndarray:
    """(C, h, w) feature map -> (C, H0, W0) on the original image's pixels (bilinear, padding cropped away)."""
    valid_h = int(round(t.orig_size[0] * t.scale_yx[0] / stride))
    valid_w = int(round(t.orig_size[1] * t.scale_yx[1] / stride))
    valid = np.asarray(fmap)[:, : max(valid_h, 1), : max(valid_w, 1)]
    return resize_bilinear(valid.transpose(1, 2, 0), t.orig_size).transpose(2, 0, 1)


def stack(inputs: Sequence[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(list(inputs), 0))
