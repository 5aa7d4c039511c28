"""Reading images robustly and preprocessing them the way PE was trained (RGB, bilinear resize, mean=std=0.5).

:func:`read_rgb` decodes like the training pipelines (mmcv's ``LoadImageFromFile``, ``color_type='color'``, OpenCV's
``IMREAD_COLOR``), so a photo gives the same pixels in a demo as in training: EXIF orientation applied, grayscale
replicated to 3 channels, alpha DROPPED (not composited: the colour under transparent pixels is kept, as mmcv and
PIL's ``convert('RGB')`` do), 16-bit scaled to 8-bit (high byte), CMYK converted to RGB.
"""
from __future__ import annotations

import os
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from pe_dense.errors import PEDenseError

PE_MEAN = PE_STD = (0.5, 0.5, 0.5)


class BadImageError(PEDenseError, ValueError):
    """An image file or array that cannot be used; the message names it and the fix."""


def to_rgb(img: np.ndarray, source: str = "image") -> np.ndarray:
    """Grayscale -> 3 channels, RGBA -> RGB (alpha dropped), uint16 -> uint8; anything else is an error."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise BadImageError(f"{source}: expected an HxW, HxWx3 or HxWx4 image, got shape {img.shape}")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    img = img[..., :3]
    if img.dtype == np.uint16:
        img = (img / 257).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise BadImageError(f"{source}: unsupported pixel type {img.dtype}; convert to uint8")
    return np.ascontiguousarray(img)


def read_rgb(path: str) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (see the module doc), with one clear error for a missing, empty,
    truncated, undecodable file or a directory."""
    import cv2

    if os.path.isdir(path):
        raise IsADirectoryError(f"image {path!r} is a directory; pass an image file (e.g. {path}/photo.jpg)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise BadImageError(f"image {path!r} is empty (0 bytes); copy it again or remove it")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)  # this OpenCV returns None for truncated JPEG/PNG too (tested)
    if img is None:
        reason = truncation_reason(data.tobytes()) or "corrupt, or not an image format OpenCV reads"
        raise BadImageError(f"image {path!r} could not be decoded ({reason}); replace it with a valid JPEG/PNG "
                            "or remove it")
    return to_rgb(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), path)


def truncation_reason(data: bytes) -> str:
    """Why an undecodable JPEG/PNG byte string looks cut short ('' if not), for the error message only: a complete
    JPEG has its end-of-image marker after its last start-of-scan (an EXIF thumbnail's come before both), a
    complete PNG ends in IEND. Data appended after the image (motion photos) can fool it, so it never decides."""
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        return "truncated JPEG: no end-of-image marker after the last scan"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        return "truncated PNG: no IEND chunk at the end"
    return ""


def preprocess(img: np.ndarray, size: Union[int, Tuple[int, int]]) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, h, w) float tensor, bilinear resize (the official transform), normalised."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    x = torch.from_numpy(to_rgb(img)).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(PE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PE_STD).view(1, 3, 1, 1)
    return (x - mean) / std
