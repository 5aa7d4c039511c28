"""DETA's query selection: which encoder proposals become decoder queries.

Deformable DETR takes the global top-Q proposals by score, so large flat regions yield many near-duplicate
queries on one level. DETA (public code, ``deformable_transformer.py`` with ``assign_first_stage``) instead:

1. per feature level, takes the ``pre_nms_topk`` (1000) best proposals by score;
2. runs NMS (IoU 0.9) within each level;
3. keeps, in score order, the best ``Q // L`` survivors of each level (Q queries, L levels);
4. pads to Q with the best remaining survivors of any level;
5. falls back to the plain global top-Q if fewer than Q proposals survive NMS.

One simplification: DETA's step 1 takes the top 1000 of ``score * (level == l)``, so a level with fewer than
1000 positions also lists zero-score positions of other levels; here a level lists only its own positions.
"""
from __future__ import annotations

import logging

import torch
from mmcv.ops import batched_nms
from mmengine.logging import print_log
from torch import Tensor


def level_ids_from_shapes(spatial_shapes: Tensor) -> Tensor:
    """(sum(h*w),) level index of each flattened encoder position."""
    counts = (spatial_shapes[:, 0] * spatial_shapes[:, 1]).long()
    return torch.repeat_interleave(torch.arange(len(counts), device=spatial_shapes.device), counts)


def select_queries_one_image(scores: Tensor, boxes: Tensor, level_ids: Tensor, num_queries: int,
                             num_levels: int, pre_nms_topk: int = 1000, nms_iou: float = 0.9) -> Tensor:
    """Indices (num_queries,) of the proposals that become queries, for one image.

    Args:
        scores: (N,) proposal scores (logits or probabilities: only their order matters).
        boxes: (N, 4) proposal boxes, x1y1x2y2 (any consistent units).
        level_ids: (N,) feature level of each proposal.
        num_queries: Q.
        num_levels: L.
        pre_nms_topk: proposals kept per level before NMS.
        nms_iou: IoU threshold of the per-level NMS.
    """
    n = scores.numel()
    if n < num_queries:
        raise ValueError(f"{num_queries} queries requested but the encoder has only {n} positions: lower "
                         "num_queries or feed larger images")
    scores, boxes = scores.detach().float(), boxes.detach().float()
    candidates = []
    for lvl in range(num_levels):
        idx = torch.nonzero(level_ids == lvl, as_tuple=False).squeeze(1)
        k = min(pre_nms_topk, idx.numel())
        candidates.append(idx[scores[idx].topk(k).indices])
    candidates = torch.cat(candidates)
    _, keep = batched_nms(boxes[candidates], scores[candidates], level_ids[candidates],
                          dict(type="nms", iou_threshold=nms_iou))
    keep = candidates[keep]  # sorted by decreasing score
    if keep.numel() < num_queries:
        print_log(f"DETA query selection: {keep.numel()} proposals survive NMS, fewer than {num_queries} "
                  "queries; using the plain top-k", logger="current", level=logging.DEBUG)
        return scores.topk(num_queries).indices
    per_level = num_queries // num_levels
    onehot = level_ids[keep][None] == torch.arange(num_levels, device=keep.device)[:, None]  # (L, K)
    rank_in_level = (onehot.cumsum(1) * onehot).sum(0) - 1  # 0 for the best of its level
    chosen = rank_in_level < per_level
    missing = num_queries - int(chosen.sum())
    if missing > 0:
        pad = torch.nonzero(~chosen, as_tuple=False).squeeze(1)[:missing]
        chosen[pad] = True
    return keep[chosen]


def select_queries(scores: Tensor, boxes: Tensor, spatial_shapes: Tensor, num_queries: int,
                   pre_nms_topk: int = 1000, nms_iou: float = 0.9) -> Tensor:
    """Batched wrapper: (B, N) scores, (B, N, 4) x1y1x2y2 boxes -> (B, num_queries) indices."""
    level_ids = level_ids_from_shapes(spatial_shapes)
    return torch.stack([
        select_queries_one_image(s, b, level_ids, num_queries, len(spatial_shapes), pre_nms_topk, nms_iou)
        for s, b in zip(scores, boxes)])
