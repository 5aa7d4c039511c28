"""DETA inference post-processing: class-wise NMS over queries x classes, and PE's "quad" soft-NMS.

One-to-many training makes several queries fire on one object, so DETA needs NMS at test time:
sigmoid scores over all (query, class) pairs, the top ``pre_topk`` (10000), class-wise NMS at IoU 0.7, keep 100
(public DETA ``NMSPostProcess``). The PE release adds a TTA variant: top 2000, then soft-NMS whose decay for
IoU above the threshold is ``(1 - IoU) ** quad_scale`` ("quad"), pruning scores under 0.001
(``models/utils_softnms.py`` of perception_models). mmcv's soft-NMS has no "quad" decay, hence our own.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from mmcv.ops import batched_nms
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

SOFT_NMS_METHODS = ("quad", "linear", "gaussian", "hard")


def soft_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float = 0.7, method: str = "quad",
             quad_scale: float = 0.5, sigma: float = 0.5, score_thr: float = 0.001) -> Tuple[Tensor, Tensor]:
    """Class-wise soft-NMS.

    Args:
        boxes: (N, 4) x1y1x2y2. scores: (N,). labels: (N,) classes; boxes of different classes never interact.
        iou_threshold: decay applies above this IoU ("quad", "linear", "hard").
        method: "quad" (PE TTA: ``(1 - iou) ** quad_scale``), "linear" (``1 - iou``), "gaussian"
            (``exp(-iou^2 / sigma)``, all pairs) or "hard" (plain NMS).
        score_thr: boxes whose decayed score falls to or below this are dropped.

    Returns:
        (keep, new_scores): kept indices into the inputs in the order they were picked (decreasing decayed
        score), and their decayed scores.
    """
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f"soft-NMS method {method!r} unknown; choose one of {SOFT_NMS_METHODS}")
    if boxes.numel() == 0:
        return boxes.new_zeros(0, dtype=torch.long), scores.new_zeros(0)
    boxes = boxes.float()
    # Offset boxes per class so that different classes never overlap (torchvision's batched-NMS trick).
    offsets = labels.to(boxes) * (boxes.max() - boxes.min() + 1)
    boxes = boxes + offsets[:, None]
    scores = scores.float().clone()
    idx = torch.arange(scores.numel(), device=scores.device)
    keep, kept_scores = [], []
    while scores.numel() > 0:
        top = int(torch.argmax(scores))
        keep.append(idx[top])
        kept_scores.append(scores[top])
        ious = bbox_overlaps(boxes[top:top + 1], boxes)[0]
        if method == "quad":
            decay = torch.where(ious > iou_threshold, (1 - ious).clamp(min=0) ** quad_scale, torch.ones_like(ious))
        elif method == "linear":
            decay = torch.where(ious > iou_threshold, 1 - ious, torch.ones_like(ious))
        elif method == "gaussian":
            decay = torch.exp(-ious.pow(2) / sigma)
        else:
            decay = (ious < iou_threshold).to(ious)
        scores = scores * decay
        alive = scores > score_thr
        alive[top] = False
        boxes, scores, idx = boxes[alive], scores[alive], idx[alive]
    return torch.stack(keep), torch.stack(kept_scores)


def nms_over_queries(cls_logits: Tensor, boxes: Tensor, pre_topk: int = 10000, iou_threshold: float = 0.7,
                     max_per_img: Optional[int] = 100, soft_nms_cfg: Optional[dict] = None
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    """DETA's test-time selection for one image.

    Args:
        cls_logits: (Q, C) classification logits. boxes: (Q, 4) x1y1x2y2.
        pre_topk: (query, class) pairs kept by score before NMS (DETA 10000; PE TTA 2000).
        iou_threshold: class-wise NMS IoU (DETA 0.7); also the soft-NMS threshold.
        max_per_img: detections kept after NMS; ``None`` keeps all.
        soft_nms_cfg: if given, soft-NMS (kwargs of :func:`soft_nms` except the tensors) replaces NMS.

    Returns:
        (boxes, scores, labels) sorted by decreasing score.
    """
    num_classes = cls_logits.shape[-1]
    scores = cls_logits.sigmoid().flatten()
    if scores.numel() > pre_topk:
        scores, pair = scores.topk(pre_topk)
    else:
        pair = torch.arange(scores.numel(), device=scores.device)
    labels = pair % num_classes
    boxes = boxes[torch.div(pair, num_classes, rounding_mode="floor")]
    if soft_nms_cfg is not None:
        cfg = dict(soft_nms_cfg)
        cfg.setdefault("iou_threshold", iou_threshold)
        keep, scores = soft_nms(boxes, scores, labels, **cfg)
    else:
        _, keep = batched_nms(boxes.float(), scores.float(), labels, dict(type="nms", iou_threshold=iou_threshold))
        scores = scores[keep]
    if max_per_img is not None:
        keep, scores = keep[:max_per_img], scores[:max_per_img]
    return boxes[keep], scores, labels[keep]
