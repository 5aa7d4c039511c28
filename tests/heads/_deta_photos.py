"""Six real photos from scikit-image with hand-drawn boxes, written as a COCO set (images/*.png + annotations).

The boxes were drawn on the photos with a 50-px grid (person and shuttle in ``astronaut``, the cameraman and his
camera in ``camera``, the cat in ``chelsea``, cup and spoon in ``coffee``, the rocket in ``rocket``, the
motorcycle of ``stereo_motorcycle``). They are approximate, which is fine: the tests ask a detector to reproduce
them on the same images.
"""
from __future__ import annotations

import json
import os

import numpy as np

CLASSES = ("person", "rocket", "camera", "cat", "cup", "spoon", "motorcycle")
# image name -> [(class, x1, y1, x2, y2)] in the original pixel coordinates
BOXES = {
    "astronaut": [("person", 20, 15, 372, 512), ("rocket", 352, 0, 472, 282)],
    "camera": [("person", 0, 62, 335, 512), ("camera", 255, 138, 327, 190)],
    "chelsea": [("cat", 0, 0, 400, 300)],
    "coffee": [("cup", 172, 18, 412, 305), ("spoon", 322, 65, 425, 325)],
    "rocket": [("rocket", 302, 125, 340, 410)],
    "stereo_motorcycle": [("motorcycle", 92, 95, 688, 452)],
}


def _load(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def build_photo_coco(out_dir: str) -> str:
    """Write the set under ``out_dir`` (``images/``, ``annotations/photos.json``); return ``out_dir``."""
    from PIL import Image

    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    cat_id = {c: i + 1 for i, c in enumerate(CLASSES)}
    images, anns = [], []
    for img_id, (name, boxes) in enumerate(BOXES.items(), start=1):
        rgb = _load(name)
        Image.fromarray(rgb).save(os.path.join(out_dir, "images", f"{name}.png"))
        images.append(dict(id=img_id, file_name=f"{name}.png", height=rgb.shape[0], width=rgb.shape[1]))
        for cls, x1, y1, x2, y2 in boxes:
            anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=cat_id[cls],
                             bbox=[x1, y1, x2 - x1, y2 - y1], area=float((x2 - x1) * (y2 - y1)), iscrowd=0))
    coco = dict(images=images, annotations=anns,
                categories=[dict(id=i, name=c, supercategory="photo") for c, i in cat_id.items()])
    with open(os.path.join(out_dir, "annotations", "photos.json"), "w") as f:
        json.dump(coco, f)
    return out_dir
