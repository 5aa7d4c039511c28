"""``PEDepthMetric``: mmseg's ``DepthMetric`` (same formulas: per image, then averaged) with its defects fixed.

Fixed here: ``depth_metrics=[...]`` raised TypeError (``isinstance(x, [tuple, list])``); ``crop_type='nyu_crop'``
was the fixed box [45:471, 41:601], right only for 480x640 ground truth: ``'eigen'`` (and ``'nyu_crop'``) now
scale that box to any size. Also: the range is (min, max] (a 10.000 m reading counts, as the protocol's
(1e-3, 10]), non-finite ground truth is invalid, predictions are clamped into the range before the logs
(``clamp_pred``, as BTS/DINOv2 evaluation does), and an image without valid pixels is skipped with a warning
instead of averaging NaN into the result.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import torch
from mmengine.logging import print_log
from mmseg.evaluation.metrics import DepthMetric
from mmseg.registry import METRICS
from torch import Tensor

# Eigen et al.'s evaluation box on NYUv2's 480x640 frames: rows 45..470, columns 41..600.
EIGEN_BOX_480x640 = (45, 471, 41, 601)


def eigen_crop_box(height: int, width: int) -> tuple:
    """(top, bottom, left, right) of the Eigen box scaled to (height, width), rounded half up."""
    top, bottom, left, right = EIGEN_BOX_480x640
    return tuple(int(math.floor(v + 0.5)) for v in (top * height / 480, bottom * height / 480,
                                                    left * width / 640, right * width / 640))


def eigen_crop_mask(height: int, width: int, device=None) -> Tensor:
    """Boolean (height, width) mask of the scaled Eigen box."""
    top, bottom, left, right = eigen_crop_box(height, width)
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask


@METRICS.register_module()
class PEDepthMetric(DepthMetric):
    """Depth metrics d1, d2, d3, abs_rel, sq_rel, rmse, rmse_log, log10, silog (mmseg's definitions; silog is
    sqrt(mean(g^2) - 0.5 mean(g)^2) with g = log pred - log gt, unscaled).

    Args:
        depth_metrics: names to report (default all); a list or tuple.
        crop_type: None, or 'eigen' / 'nyu_crop' (the Eigen box scaled to the ground-truth size).
        clamp_pred: clamp predictions into [min_depth_eval, max_depth_eval] before scoring.
    """

    def __init__(self, depth_metrics: Optional[Sequence[str]] = None, min_depth_eval: float = 1e-3,
                 max_depth_eval: float = 10.0, crop_type: Optional[str] = None, clamp_pred: bool = True, **kwargs):
        if depth_metrics is not None:
            if isinstance(depth_metrics, str) or not isinstance(depth_metrics, (tuple, list)):
                raise TypeError(f"depth_metrics must be a list or tuple of names from {self.METRICS}, "
                                f"got {depth_metrics!r}")
            unknown = [m for m in depth_metrics if m not in self.METRICS]
            if unknown:
                raise ValueError(f"unknown depth metrics {unknown}: choose from {self.METRICS}")
        if crop_type not in (None, "eigen", "nyu_crop"):
            raise ValueError(f"crop_type={crop_type!r}: use None or 'eigen' ('nyu_crop' is the same box)")
        super().__init__(depth_metrics=None, min_depth_eval=min_depth_eval, max_depth_eval=max_depth_eval,
                         crop_type=None, **kwargs)
        self.metrics = tuple(depth_metrics) if depth_metrics is not None else self.METRICS
        self.crop_type, self.clamp_pred = crop_type, clamp_pred

    def _get_eval_mask(self, gt_depth: Tensor) -> Tensor:
        valid = torch.isfinite(gt_depth) & (gt_depth > self.min_depth_eval) & (gt_depth <= self.max_depth_eval)
        if self.crop_type is not None:
            valid &= eigen_crop_mask(*gt_depth.shape[-2:], device=gt_depth.device)
        return valid

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_depth_map"]["data"].squeeze()
            if self.format_only or self.output_dir is not None:
                super().process(data_batch, [sample])  # mmseg's PNG writer; scoring below only
                if self.format_only:
                    continue
                self.results.pop()
            gt = sample["gt_depth_map"]["data"].squeeze().to(pred)
            if gt.shape != pred.shape:
                raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in size "
                                 f"for {sample.get('img_path')}: the model must return depth at ori_shape")
            mask = self._get_eval_mask(gt)
            if not mask.any():
                print_log(f"{sample.get('img_path')}: no valid ground-truth pixel in range, skipped",
                          logger="current", level=logging.WARNING)
                continue
            p = pred[mask]
            if self.clamp_pred:
                p = p.clamp(self.min_depth_eval, self.max_depth_eval)
            self.results.append((gt[mask].cpu(), p.cpu()))
