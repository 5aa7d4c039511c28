"""Greedy NMS and DETA's test-time selection at fixed size, in plain tensor ops an exporter can express.

``torchvision``/``mmcv`` NMS returns as many boxes as survive (ONNX ``NonMaxSuppression``: a data-dependent
shape that TensorRT and fixed-shape runtimes reject, DETA PR #24). Here the survivors are found with an IoU
matrix and masked suppression (Cluster-NMS, Zheng et al. 2021): ``keep_j = valid_j and no kept i ranked above
j overlaps j``, iterated from "all kept". The greedy answer is the only fixed point and iteration t already has
it right for every box whose chain of suppressors is shorter than t, so ``iterations = number of candidates``
(the default) is exactly greedy NMS; fewer iterations trade exactness on long chains for speed. Outputs have
fixed shapes: K slots, empty ones with score 0, label -1 and a zero box, plus the count of filled slots.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor


def pairwise_iou(boxes: Tensor) -> Tensor:
    """(B, N, 4) xyxy -> (B, N, N) IoU; a pair whose union is empty has IoU 0 (mmcv's CPU kernel: NaN, which
    suppresses nothing either)."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(boxes.dtype).tiny), torch.zeros_like(inter))


def nms_keep_sorted(boxes: Tensor, groups: Optional[Tensor], valid: Tensor, iou_threshold: float,
                    iterations: Optional[int] = None, iou: Optional[Tensor] = None) -> Tensor:
    """Greedy NMS on candidates already sorted by decreasing score: (B, N) bool, True = kept.

    Boxes suppress only boxes of the same group (class-wise NMS; ``groups=None``: one group) ranked below them,
    when IoU > threshold (strictly, as mmcv); invalid candidates are never kept and suppress nothing. ``iou``: the
    (B, N, N) IoU matrix when the caller has a cheaper way to it than from ``boxes``.
    """
    n = boxes.shape[1]
    above = torch.ones(n, n, dtype=torch.bool, device=boxes.device).triu(1)  # [i, j]: i ranked above j
    iou = pairwise_iou(boxes) if iou is None else iou
    suppresses = (iou > iou_threshold) & above & valid[:, :, None]
    if groups is not None:
        suppresses = suppresses & (groups[:, :, None] == groups[:, None, :])
    keep = valid
    for _ in range(n if iterations is None else iterations):
        keep = valid & ~(suppresses & keep[:, :, None]).any(dim=1)
    return keep


def first_k_kept(keep: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """Indices (B, k) of the first k kept candidates in rank order (then non-kept ones) and the count kept."""
    n = keep.shape[1]
    rank = torch.arange(n, device=keep.device, dtype=torch.float32)
    key = torch.where(keep, n - rank, -1 - rank)  # kept first, each part in rank order; all keys distinct
    idx = key.topk(k, dim=1).indices
    return idx, keep.to(torch.int64).sum(dim=1).clamp(max=k)


def detections_from_queries(cls_logits: Tensor, boxes: Tensor, max_dets: int = 100, pre_topk: int = 1000,
                            iou_threshold: float = 0.7, score_thr: float = 0.0,
                            iterations: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """DETA's test-time selection (``heads.deta.postprocess.nms_over_queries``) at fixed size, batched.

    (B, Q, C) logits and (B, Q, 4) xyxy boxes -> ``boxes [B,K,4]``, ``scores [B,K]``, ``labels [B,K]`` int64,
    ``num_dets [B]`` int64 with K = ``max_dets``. Sigmoid scores of all (query, class) pairs, the best
    ``pre_topk`` (DETA: 10000; the IoU matrix is pre_topk squared, so exports use fewer), class-wise NMS,
    the best K survivors; slots past ``num_dets`` (and pairs scoring <= ``score_thr``) are empty.
    """
    b, q, c = cls_logits.shape
    p = min(pre_topk, q * c)
    scores, pair = cls_logits.sigmoid().flatten(1).topk(p, dim=1)
    labels = pair % c
    query = torch.div(pair, c, rounding_mode="floor")
    cand = torch.gather(boxes, 1, query[..., None].expand(b, p, 4))
    # candidates are (query, class) pairs sharing the Q query boxes: the Q x Q IoU gathered to P x P costs two
    # gathers instead of the IoU arithmetic on P x P (P = 1000+, Q = 100-900)
    iou_q = pairwise_iou(boxes.float())
    iou = torch.gather(torch.gather(iou_q, 1, query[..., None].expand(b, p, q)), 2, query[:, None, :].expand(b, p, p))
    keep = nms_keep_sorted(cand.float(), labels, scores > score_thr, iou_threshold, iterations, iou=iou)
    k = min(max_dets, p)
    idx, num = first_k_kept(keep, k)
    filled = torch.arange(k, device=idx.device)[None] < num[:, None]
    out_boxes = torch.where(filled[..., None], torch.gather(cand, 1, idx[..., None].expand(b, k, 4)), 0.0)
    out_scores = torch.where(filled, torch.gather(scores, 1, idx), 0.0)
    out_labels = torch.where(filled, torch.gather(labels, 1, idx), -1)
    if k < max_dets:  # fewer candidates than slots: pad with empty slots
        pad = max_dets - k
        out_boxes = torch.cat([out_boxes, out_boxes.new_zeros(b, pad, 4)], 1)
        out_scores = torch.cat([out_scores, out_scores.new_zeros(b, pad)], 1)
        out_labels = torch.cat([out_labels, out_labels.new_full((b, pad), -1)], 1)
    return out_boxes, out_scores, out_labels, num


def select_queries_fixed(scores: Tensor, boxes: Tensor, level_sizes: Tuple[int, ...], num_queries: int,
                         pre_nms_topk: int = 1000, nms_iou: float = 0.9,
                         iterations: Optional[int] = None) -> Tensor:
    """DETA's two-stage query selection (``heads.deta.query_selection``) at fixed size: (B, N) scores and
    (B, N, 4) xyxy proposals -> (B, num_queries) indices, in the same order as the eager code.

    ``level_sizes`` are the Python ints h*w of each level (constants, so no shape is computed from data). Per
    level the best ``pre_nms_topk``, NMS within each level, the best ``Q // L`` survivors of each level, padded
    with the best other survivors, all in decreasing score order; if fewer than Q survive, the plain top-Q (both
    are computed and one is picked with ``where``: no ``If``).
    """
    b, n = scores.shape
    if sum(level_sizes) != n or n < num_queries:
        raise ValueError(f"level sizes {level_sizes} (sum {sum(level_sizes)}) must cover the {n} proposals, and "
                         f"{num_queries} queries need at least as many proposals")
    scores = scores.float()
    cand, keep, start = [], [], 0
    for size in level_sizes:
        pos = scores[:, start:start + size].topk(min(pre_nms_topk, size), dim=1).indices + start
        # NMS within the level, one level at a time: the IoU matrix's blocks between levels (which never
        # suppress each other) are never computed, 5x less work than one NMS over all levels at recipe sizes
        level_boxes = torch.gather(boxes.float(), 1, pos[..., None].expand(*pos.shape, 4))
        keep.append(nms_keep_sorted(level_boxes, None, torch.ones_like(pos, dtype=torch.bool), nms_iou, iterations))
        cand.append(pos)
        start += size
    cand, keep = torch.cat(cand, 1), torch.cat(keep, 1)  # (B, M) positions, M a constant
    # the level of each position as a literal constant, gathered along a flat index: repeat_interleave and 2-D
    # advanced indexing export as constant-shape ops (Range, GatherND) that OpenVINO 2026.4's CPU plugin cannot
    # compile ("Can not create StaticMemory object")
    level_of = torch.tensor([lvl for lvl, size in enumerate(level_sizes) for _ in range(size)], device=scores.device)
    order = torch.gather(scores, 1, cand).topk(cand.shape[1], dim=1).indices  # all candidates by score
    cand, keep = torch.gather(cand, 1, order), torch.gather(keep, 1, order)
    levels = level_of[cand.flatten()].view(cand.shape)
    onehot = (levels[..., None] == torch.arange(len(level_sizes), device=levels.device)) & keep[..., None]
    rank_in_level = (onehot.to(torch.int64).cumsum(1) * onehot).sum(-1) - 1
    chosen = keep & (rank_in_level < num_queries // len(level_sizes))
    missing = num_queries - chosen.to(torch.int64).sum(1, keepdim=True)
    spare = keep & ~chosen
    chosen = chosen | (spare & (spare.to(torch.int64).cumsum(1) <= missing))
    idx, _ = first_k_kept(chosen, num_queries)
    selected = torch.gather(cand, 1, idx)
    enough = keep.to(torch.int64).sum(1, keepdim=True) >= num_queries
    return torch.where(enough, selected, scores.topk(num_queries, dim=1).indices)
