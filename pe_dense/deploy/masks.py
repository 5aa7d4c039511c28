"""Paste RoI-resolution mask probabilities (Mask R-CNN's ``masks [K, M, M]``) into the image, in numpy.

Same sampling as mmdet's ``_do_paste_mask`` (from detectron2): every image pixel centre is mapped into its box,
then into the M x M mask with half-pixel centres, and read bilinearly with zeros outside the mask
(``grid_sample(align_corners=False, padding_mode='zeros')``); binary masks are ``prob >= threshold``.
Bilinear weights factor into rows and columns, so each mask is two small matrix products.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def _weights(coords: np.ndarray, size: int) -> np.ndarray:
    """(n,) sample positions in mask pixels -> (n, size) bilinear weights, zero for taps outside the mask."""
    i0 = np.floor(coords)
    frac = (coords - i0).astype(np.float32)
    w = np.zeros((coords.shape[0], size), np.float32)
    rows = np.arange(coords.shape[0])
    for tap, weight in ((i0, 1 - frac), (i0 + 1, frac)):
        inside = (tap >= 0) & (tap < size)
        w[rows[inside], tap[inside].astype(np.int64)] += weight[inside]
    return w


def paste_masks(masks: np.ndarray, boxes: np.ndarray, image_size: Tuple[int, int],
                threshold: Optional[float] = 0.5) -> np.ndarray:
    """(K, M, M) probabilities + (K, 4) xyxy boxes in image pixels -> (K, H, W) bool masks (``threshold=None``:
    float32 probabilities)."""
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32)
    h, w = image_size
    out = np.zeros((masks.shape[0], h, w), np.float32)
    ys = np.arange(h, dtype=np.float32) + np.float32(0.5)
    xs = np.arange(w, dtype=np.float32) + np.float32(0.5)
    for k, (m, (x0, y0, x1, y1)) in enumerate(zip(masks, boxes)):
        mh, mw = m.shape
        # image pixel -> [-1, 1] in the box (as mmdet) -> mask pixel coordinate (grid_sample, align_corners=False)
        gy = (ys - y0) / (y1 - y0) * 2 - 1
        gx = (xs - x0) / (x1 - x0) * 2 - 1
        out[k] = _weights(((gy + 1) * mh - 1) / 2, mh) @ m @ _weights(((gx + 1) * mw - 1) / 2, mw).T
    return out if threshold is None else out >= threshold
