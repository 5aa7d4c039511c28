"""Reading images robustly and preprocessing them the way PE was trained (RGB, bilinear resize, mean=std=0.5)."""
from __future__ import annotations

import os
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

PE_MEAN = PE_STD = (0.5, 0.5, 0.5)


class BadImageError(ValueError):
    pass


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
    """Read an image file as HxWx3 uint8 RGB, with a clear error for missing or undecodable files."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise BadImageError(f"image {path!r} could not be decoded (corrupt or not an image); remove or replace it")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[-1] == 4 else cv2.COLOR_BGR2RGB)
    return to_rgb(img, path)


def preprocess(img: np.ndarray, size: Union[int, Tuple[int, int]]) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, h, w) float tensor, bilinear resize (the official transform), normalised."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    x = torch.from_numpy(to_rgb(img)).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(PE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PE_STD).view(1, 3, 1, 1)
    return (x - mean) / std
