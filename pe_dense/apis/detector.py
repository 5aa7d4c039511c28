"""``Detector``: mmdet detectors (DETA, Mask R-CNN) from a config and checkpoint, image in, boxes out."""
from __future__ import annotations

import json
import logging
import os
from typing import List, Optional

import numpy as np
from mmdet.apis import DetInferencer

from .base import MMPredictor, dataset_metainfo, meta_from_checkpoint
from .inputs import inference_pipeline
from .results import Detections

logger = logging.getLogger(__name__)


class PEDetInferencer(DetInferencer):
    """mmdet's inferencer with our pipelines (``CheckedLoadImageFromFile``, annotation loaders dropped) and class
    names from the checkpoint, else the config (mmdet falls back to COCO's 80 names)."""

    def _init_pipeline(self, cfg):
        from mmcv.transforms import Compose

        return Compose(inference_pipeline(cfg.test_dataloader.dataset.pipeline, "mmdet.InferencerLoader"))

    def _load_weights_to_model(self, model, checkpoint, cfg):
        from mmengine.runner.checkpoint import _load_checkpoint_to_model

        if checkpoint is not None:
            _load_checkpoint_to_model(model, checkpoint)
        else:
            logger.warning("no checkpoint: the detector has RANDOM weights (fine for tests, meaningless boxes)")
        meta = dataset_metainfo(cfg)
        meta.update(meta_from_checkpoint(checkpoint))
        model.dataset_meta = meta


def category_ids_from_config(cfg, classes: List[str]) -> Optional[List[int]]:
    """``ids[label]`` from the test dataset's COCO annotation file when it is readable, matched by class name."""
    ds = cfg.test_dataloader.dataset
    while "dataset" in ds:
        ds = ds["dataset"]
    ann = ds.get("ann_file")
    if not ann:
        return None
    path = ann if os.path.isabs(ann) else os.path.join(ds.get("data_root") or "", ann)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        cats = {c["name"]: c["id"] for c in json.load(f).get("categories", [])}
    if not all(c in cats for c in classes):
        return None
    return [cats[c] for c in classes]


class Detector(MMPredictor):
    """``Detector(config, checkpoint=None, device='cpu', precision='fp32', batch_size=1)``;
    ``det(image | path | folder | glob | list)`` -> ``Detections`` (a list for several images).

    Boxes are in original pixels (mmdet rescales them); masks (Mask R-CNN) are bool (N, H, W) at the original size.
    ``category_ids`` maps labels to COCO category ids for ``to_coco`` (default: read from the config's annotation
    file when present, else label + 1). ``score_thr`` drops low scores from results (default: keep all).
    """

    def __init__(self, config, checkpoint: Optional[str] = None, device: str = "cpu", precision: str = "fp32",
                 batch_size: int = 1, cfg_options: Optional[dict] = None, score_thr: float = 0.0,
                 category_ids: Optional[List[int]] = None):
        super().__init__(config, checkpoint, device, precision, batch_size, cfg_options)
        self.score_thr = score_thr
        self.category_ids = category_ids or category_ids_from_config(self.cfg, self.class_names)

    def _build_inferencer(self, cfg, checkpoint, device):
        return PEDetInferencer(cfg, checkpoint, device=device, show_progress=False)

    def _convert(self, pred, path, image) -> Detections:
        inst = pred.pred_instances
        scores = inst.scores.float().cpu().numpy()
        keep = scores >= self.score_thr
        labels = inst.labels.cpu().numpy().astype(np.int64)[keep]
        names = self.class_names
        masks = None
        if "masks" in inst:
            masks = inst.masks.cpu().numpy().astype(bool)[keep]
        return Detections(boxes=inst.bboxes.float().cpu().numpy()[keep], scores=scores[keep], labels=labels,
                          class_names=[names[i] if i < len(names) else str(i) for i in labels], masks=masks,
                          image_size=tuple(pred.ori_shape), path=path, image=image, category_ids=self.category_ids)
