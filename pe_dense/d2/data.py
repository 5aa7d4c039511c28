"""The bundled demo photos (``pe_dense.data.demo``: 2 real photos, 27 instances, 12 classes) as detectron2
datasets, for smoke training and evaluation without downloads."""
from __future__ import annotations

import os
from functools import partial
from typing import Callable, Optional, Sequence, Union

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.detection_utils import get_fed_loss_cls_weights

from ..data.demo import ANN_FILE, IMAGE_DIR, build_demo_coco


def register_demo_dataset(name: str = "pe_demo", root: Optional[str] = None) -> str:
    """Build the demo COCO set under ``root`` (default: pe_dense's demo cache) and register it as ``name``.

    Registering the same name twice is a no-op. Returns ``name``; ``MetadataCatalog.get(name).json_file`` is the
    annotation file (what ``COCOEvaluator`` reads).
    """
    if name in DatasetCatalog.list():
        return name
    root = build_demo_coco(root)
    register_coco_instances(name, {}, os.path.join(root, ANN_FILE), os.path.join(root, IMAGE_DIR))
    return name


def fed_loss_weights_getter(dataset_names: Union[str, Sequence[str]], freq_weight_power: float = 0.5) -> Callable:
    """The no-argument callable ``FastRCNNOutputLayers(get_fed_loss_cls_weights=...)`` wants, as a LazyConfig
    entry (Meta's config used a lambda, which LazyConfig cannot save): image frequency ** power per class, read
    from the datasets' ``class_image_count`` metadata when the head is built."""
    return partial(get_fed_loss_cls_weights, dataset_names, freq_weight_power)
