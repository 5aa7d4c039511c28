"""Flip + multi-scale test-time augmentation for DETA, as in the PE release (``engine_tta.py``).

mmdet's ``DetTTAModel`` already runs the views (``TestTimeAug`` pipeline), flips boxes back and merges the
views with an mmcv NMS. The PE recipe differs in two ways, added here:
- per-view size filter: on the downscaled views only boxes larger than a minimum size are kept
  (``scale_ranges``, boxes measured in the original image);
- the merge uses PE's "quad" soft-NMS, which mmcv does not have (``tta_cfg.nms.type='soft_nms'``).
Any mmcv NMS config (``type='nms'``/``'soft_nms'`` with mmcv methods) still works through ``mmcv_nms``.
"""
from __future__ import annotations

from typing import List

import torch
from mmcv.ops import batched_nms
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from .postprocess import soft_nms


def _long_side(meta: dict) -> int:
    return int(max(meta["img_shape"][:2]))


@MODELS.register_module()
class DETATTAModel(DetTTAModel):
    """``tta_cfg``:

    - ``nms``: ``dict(type='soft_nms', method='quad', iou_threshold=0.7, quad_scale=0.5, score_thr=0.001)``
      (PE) or ``dict(type='mmcv_nms', nms=<an mmcv batched_nms config>)``.
    - ``max_per_img``: detections kept after merging; ``None`` keeps every soft-NMS survivor, which is what the
      PE release effectively does (it slices the (indices, scores) tuple instead of the indices).
    - ``scale_ranges``: optional ``[(long_side, min_size, max_size), ...]``: a view whose resized long side is
      ``long_side`` keeps boxes with ``min_size**2 < area < max_size**2`` (PE: 0/32/64 px minimum on the
      smaller views). Views of other sizes are not filtered.
    """

    def _filter_by_scale(self, inst: InstanceData, meta: dict) -> InstanceData:
        for long_side, lo, hi in self.tta_cfg.get("scale_ranges") or ():
            if _long_side(meta) == long_side:
                b = inst.bboxes
                area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
                return inst[(area > lo * lo) & (area < hi * hi)]
        return inst

    def _merge_single_sample(self, data_samples: List[DetDataSample]) -> DetDataSample:
        insts = [self._filter_by_scale(s.pred_instances, s.metainfo) for s in data_samples]
        metas = [s.metainfo for s in data_samples]
        boxes, scores = self.merge_aug_bboxes([i.bboxes for i in insts], [i.scores for i in insts], metas)
        labels = torch.cat([i.labels for i in insts])
        result = data_samples[0]
        if boxes.numel() == 0:
            result.pred_instances = InstanceData(bboxes=boxes.reshape(0, 4), scores=scores, labels=labels)
            return result
        nms_cfg = dict(self.tta_cfg.nms)
        kind = nms_cfg.pop("type")
        if kind == "soft_nms":
            keep, scores = soft_nms(boxes, scores, labels, **nms_cfg)
        elif kind == "mmcv_nms":
            dets, keep = batched_nms(boxes, scores, labels, nms_cfg["nms"])
            scores = dets[:, -1]
        else:
            raise ValueError(f"tta_cfg.nms.type={kind!r}; use 'soft_nms' (PE quad soft-NMS) or 'mmcv_nms'")
        max_per_img = self.tta_cfg.get("max_per_img")
        if max_per_img is not None:
            keep, scores = keep[:max_per_img], scores[:max_per_img]
        result.pred_instances = InstanceData(bboxes=boxes[keep], scores=scores, labels=labels[keep])
        return result

