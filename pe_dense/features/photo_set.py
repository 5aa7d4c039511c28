"""A small real-photo segmentation set in mmseg's ``BaseSegDataset`` layout, for the cache's tests and benchmark.

Photos: scikit-image's bundled pictures (astronaut, coffee, chelsea, rocket, camera, ...). Labels: the
photo's luminance split at its quartiles into 4 classes, with a 4-pixel ignore (255) frame: real image statistics
and every class present, enough for throughput and cached-versus-image equality (not for measuring accuracy).
"""
from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np

# the photos scikit-image ships in its wheel (others are downloaded on first use, which we never do)
PHOTOS: Tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "clock", "moon",
                           "hubble_deep_field", "immunohistochemistry", "brick", "gravel")
CLASSES: Tuple[str, ...] = ("darkest", "dark", "bright", "brightest")


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(float(img.max()), 1e-9))).astype(np.uint8)
    return np.ascontiguousarray(img)


def write_photo_seg_set(out_dir: str, count: int = 4, short_side: int = 0, names: Sequence[str] = PHOTOS) -> dict:
    """Write ``images/*.png`` and ``labels/*.png`` for the first ``count`` photos (cycled; repeats are flipped
    so no two files are equal), optionally resized to ``short_side``. Returns the ``BaseSegDataset`` arguments."""
    from PIL import Image

    img_dir, ann_dir = os.path.join(out_dir, "images"), os.path.join(out_dir, "labels")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    for i in range(count):
        img = _photo(names[i % len(names)])
        if (i // len(names)) % 2:
            img = np.ascontiguousarray(img[:, ::-1])
        if short_side:
            h, w = img.shape[:2]
            s = short_side / min(h, w)
            img = np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.BILINEAR))
        lum = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        label = np.digitize(lum, np.quantile(lum, [0.25, 0.5, 0.75])).astype(np.uint8)
        label[:4], label[-4:], label[:, :4], label[:, -4:] = 255, 255, 255, 255
        Image.fromarray(img).save(os.path.join(img_dir, f"{i:04d}.png"))
        Image.fromarray(label).save(os.path.join(ann_dir, f"{i:04d}.png"))
    return dict(type="BaseSegDataset", data_root=out_dir, data_prefix=dict(img_path="images", seg_map_path="labels"),
                img_suffix=".png", seg_map_suffix=".png", metainfo=dict(classes=CLASSES))
