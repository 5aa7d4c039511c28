"""DETA's IoU-based one-to-many assignment (stage 1: encoder proposals, stage 2: decoder queries).

DETA ("NMS Strikes Back", Ouyang-Zhang et al. 2022) replaces DETR's Hungarian matching with the assignment
of two-stage CNN detectors: an IoU matcher with low-quality matches, random sampling of positives and
negatives, and at most ``k`` positives per ground-truth box. mmdet already has the first two pieces
(``MaxIoUAssigner``, ``RandomSampler``); this module adds the per-GT cap and glues them together.

Semantics follow the public DETA code (``models/assigner.py``), reproduced on purpose:
- The IoU matcher labels each prediction by its best GT: below ``neg_iou_thr`` negative, between the two
  thresholds ignored, from ``pos_iou_thr`` positive; with low-quality matches every GT's best prediction(s)
  (ties included) become positive. (A low-quality match goes to that GT in mmdet, to the prediction's
  best GT in detectron2's matcher that DETA copies; they differ only when a GT's best prediction overlaps
  another GT more.)
- Sampling draws at most ``num * pos_fraction`` positives and fills up with negatives.
- The cap keeps, for a GT with ``c`` sampled positives, the ``min(c, k)`` predictions with the highest IoU
  *with that GT* (searched over all predictions, as DETA's ``sample_topk_per_gt`` does). A prediction can
  therefore serve two GTs; the box losses then count it twice, as in DETA.
- Only positives matter downstream: in DETA's focal loss every non-positive (sampled negative, unsampled,
  ignored) is background. ``DETAHead`` keeps that by default and can restrict the loss to the sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps
from mmengine.structures import InstanceData
from torch import Tensor


@dataclass
class IoUAssignment:
    """Positives as (prediction, GT) index pairs, plus the sampled negatives; indices are 0-based."""

    pos_pred_inds: Tensor
    pos_gt_inds: Tensor
    neg_pred_inds: Tensor

    @property
    def num_pos(self) -> int:
        return int(self.pos_pred_inds.numel())


def cap_positives_per_gt(pos_pred_inds: Tensor, pos_gt_inds: Tensor, ious: Tensor,
                         max_per_gt: int) -> Tuple[Tensor, Tensor]:
    """Keep at most ``max_per_gt`` positives per GT: the predictions with the highest IoU with that GT.

    Args:
        pos_pred_inds: (P,) prediction indices of the sampled positives.
        pos_gt_inds: (P,) their GT indices.
        ious: (num_gts, num_preds) IoU matrix.
        max_per_gt: the cap ``k``.

    Returns:
        (pred_inds, gt_inds), grouped by GT in increasing GT order, highest IoU first within a GT.
    """
    if pos_pred_inds.numel() == 0 or max_per_gt <= 0:
        empty = pos_pred_inds.new_zeros(0)
        return (pos_pred_inds, pos_gt_inds) if max_per_gt > 0 else (empty, empty)
    gts, counts = pos_gt_inds.unique(return_counts=True)
    k = min(max_per_gt, ious.shape[1])
    top_preds = ious[gts].topk(k, dim=1).indices  # (G, k)
    keep = torch.arange(k, device=ious.device)[None] < counts.clamp(max=k)[:, None]
    return top_preds[keep], gts[:, None].expand(-1, k)[keep]


class IoUOneToManyAssigner:
    """mmdet's ``MaxIoUAssigner`` + ``RandomSampler`` + DETA's per-GT cap, on precomputed IoUs.

    Args:
        assigner: an mmdet assigner config with ``assign_wrt_overlaps`` (``MaxIoUAssigner``).
        sampler: an mmdet sampler config (``RandomSampler``; ``add_gt_as_proposals`` must be False, since
            DETA never adds GT boxes to its predictions).
        max_pos_per_gt: the cap ``k`` (DETA: 4); ``None`` disables it.
    """

    def __init__(self, assigner: dict, sampler: dict, max_pos_per_gt: Optional[int] = 4):
        # mmdet's parts, whatever scope the process is in (a probe trained before sets mmseg's)
        with TASK_UTILS.switch_scope_and_registry("mmdet") as registry:
            self.assigner = registry.build(assigner)
        if not callable(getattr(self.assigner, "assign_wrt_overlaps", None)):
            raise TypeError(f"{type(self.assigner).__name__} has no assign_wrt_overlaps(); DETA's assignment "
                            "needs an IoU-threshold assigner such as type='MaxIoUAssigner'")
        sampler = dict(sampler)
        if sampler.setdefault("add_gt_as_proposals", False):
            raise ValueError("DETA's sampler must not add GT boxes as proposals: set add_gt_as_proposals=False")
        with TASK_UTILS.switch_scope_and_registry("mmdet") as registry:
            self.sampler = registry.build(sampler)
        self.max_pos_per_gt = max_pos_per_gt

    def __call__(self, pred_boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                 valid: Optional[Tensor] = None) -> IoUAssignment:
        """Assign one image.

        Args:
            pred_boxes: (N, 4) predictions, x1y1x2y2, in the same units as ``gt_boxes``.
            gt_boxes: (M, 4) ground truth, x1y1x2y2.
            gt_labels: (M,) labels.
            valid: optional (N,) bool mask; invalid predictions get IoU 0 (never positive).
        """
        pred_boxes, gt_boxes = pred_boxes.detach().float(), gt_boxes.float()
        ious = bbox_overlaps(gt_boxes, pred_boxes)  # (M, N)
        if valid is not None:
            ious = ious * valid[None].to(ious.dtype)
        assign_result = self.assigner.assign_wrt_overlaps(ious, gt_labels)
        sampling = self.sampler.sample(assign_result, InstanceData(priors=pred_boxes),
                                       InstanceData(bboxes=gt_boxes, labels=gt_labels))
        pos, pos_gt = sampling.pos_inds, sampling.pos_assigned_gt_inds.long()
        if self.max_pos_per_gt is not None:
            pos, pos_gt = cap_positives_per_gt(pos, pos_gt, ious, self.max_pos_per_gt)
        return IoUAssignment(pos, pos_gt, sampling.neg_inds)


def stage1_assigner_cfg(pos_iou_thr: float = 0.7, neg_iou_thr: float = 0.3, num: int = 256,
                        pos_fraction: float = 0.5, max_pos_per_gt: int = 4) -> dict:
    """DETA's stage-1 (proposal) assignment, as mmdet configs."""
    return dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=pos_iou_thr, neg_iou_thr=neg_iou_thr, min_pos_iou=0.0,
                      match_low_quality=True, gt_max_assign_all=True),
        sampler=dict(type="RandomSampler", num=num, pos_fraction=pos_fraction, neg_pos_ub=-1,
                     add_gt_as_proposals=False),
        max_pos_per_gt=max_pos_per_gt)


def stage2_assigner_cfg(iou_thr: float = 0.6, num: Optional[int] = None, pos_fraction: float = 0.25,
                        max_pos_per_gt: int = 4) -> dict:
    """DETA's stage-2 (query) assignment: one threshold, no ignore band; ``num`` = the number of queries
    (``None``: filled in by the ``DETA`` detector)."""
    return dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=iou_thr, neg_iou_thr=iou_thr, min_pos_iou=0.0,
                      match_low_quality=True, gt_max_assign_all=True),
        sampler=dict(type="RandomSampler", num=num, pos_fraction=pos_fraction, neg_pos_ub=-1,
                     add_gt_as_proposals=False),
        max_pos_per_gt=max_pos_per_gt)
