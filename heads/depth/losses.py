"""Depth losses with invalid pixels masked everywhere: scale-invariant log loss and a per-image gradient loss.

Invalid ground truth = 0 (NYU's "no measurement", and our padding), NaN, inf, or outside (min_depth, max_depth].
The gradient loss is computed and normalised per image (DINOv2's differences a mis-sliced batch tensor), so an
image's contribution does not depend on the other images of its batch, as tests check. SiLog pools the batch as
DINOv2 does, or works per image with ``per_image=True``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn


def valid_depth_mask(target: Tensor, min_depth: float = 1e-3, max_depth: float = 10.0) -> Tensor:
    """True where ``target`` is a measured depth in (min_depth, max_depth]; NaN/inf/0/padding are False."""
    return torch.isfinite(target) & (target > min_depth) & (target <= max_depth)


def _log_diff(pred: Tensor, target: Tensor, valid: Tensor, eps: float) -> Tensor:
    """log(pred) - log(target), zero where invalid (no NaN reaches the graph: invalid targets are replaced)."""
    safe_target = torch.where(valid, target, torch.ones_like(target))
    diff = torch.log(pred.clamp(min=eps)) - torch.log(safe_target)
    return torch.where(valid, diff, torch.zeros_like(diff))


@MODELS.register_module()
class DepthSiLogLoss(nn.Module):
    """Scale-invariant log loss in DINOv2's form: ``sqrt(var(g) + lambda_ * mean(g)^2)``, ``g = log pred - log gt``.

    var(g) + lambda mean^2 = mean(g^2) - (1 - lambda) mean^2 (with the population variance), i.e. Eigen et al.'s
    loss with their lambda = 1 - ``lambda_``. DINOv2 uses lambda_ = 0.15 and ``torch.var`` (unbiased, n - 1).

    Args:
        lambda_: weight of the squared mean (0 = fully scale-invariant, 1 = plain log RMSE).
        per_image: pool g over each image and average the images; False (DINOv2) pools the whole batch.
        unbiased: variance with n - 1 as DINOv2 (``torch.var``), or with n.
    """

    def __init__(self, lambda_: float = 0.15, per_image: bool = False, unbiased: bool = True,
                 min_depth: float = 1e-3, max_depth: float = 10.0, eps: float = 1e-6, loss_weight: float = 1.0,
                 loss_name: str = "loss_silog"):
        super().__init__()
        self.lambda_, self.per_image, self.unbiased = lambda_, per_image, unbiased
        self.min_depth, self.max_depth, self.eps = min_depth, max_depth, eps
        self.loss_weight, self._loss_name = loss_weight, loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def _one(self, g: Tensor, valid: Tensor) -> Tensor:
        n = valid.sum()
        if n < 2:  # nothing (or one pixel) measured: no signal, but keep the graph connected
            return g.sum() * 0.0
        mean = g.sum() / n
        var = ((g - mean) ** 2 * valid).sum() / (n - 1 if self.unbiased else n)
        return torch.sqrt(var + self.lambda_ * mean ** 2 + 1e-12)

    def forward(self, pred: Tensor, target: Tensor, **kwargs) -> Tensor:
        """pred, target: (B, 1, H, W) depths in metres."""
        valid = valid_depth_mask(target, self.min_depth, self.max_depth)
        g = _log_diff(pred, target, valid, self.eps)
        if self.per_image:
            loss = torch.stack([self._one(g[i], valid[i]) for i in range(g.shape[0])]).mean()
        else:
            loss = self._one(g, valid)
        return self.loss_weight * loss


@MODELS.register_module()
class DepthGradientLoss(nn.Module):
    """Gradient matching on log depth (Li & Snavely), computed per image over height and width.

    For each image and each subsampling step s in ``steps``: d = log pred - log gt on the valid pixels; the loss
    is sum(|d[y, x] - d[y + 2, x]| + |d[y, x] - d[y, x + 2]|) over pairs whose two pixels are valid, divided by
    the image's valid pixel count at that step. Per-image values are averaged over the batch. DINOv2's version
    indexes (B, 1, H, W) tensors as if they were (H, W): it differences along the batch axis (exactly zero at
    batch 2, mixing images at larger batches); this one never crosses images.

    Args:
        steps: subsampling steps (DINOv2: the map and every 2nd, 4th and 6th pixel).
    """

    def __init__(self, steps: Sequence[int] = (1, 2, 4, 6), min_depth: float = 1e-3, max_depth: float = 10.0,
                 eps: float = 1e-6, loss_weight: float = 1.0, loss_name: str = "loss_grad"):
        super().__init__()
        self.steps = tuple(steps)
        self.min_depth, self.max_depth, self.eps = min_depth, max_depth, eps
        self.loss_weight, self._loss_name = loss_weight, loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def per_image(self, pred: Tensor, target: Tensor) -> Tensor:
        """(B,) loss of each image of (B, 1, H, W) inputs."""
        valid = valid_depth_mask(target, self.min_depth, self.max_depth)
        d = _log_diff(pred, target, valid, self.eps)
        total = d.new_zeros(d.shape[0])
        for s in self.steps:
            ds, vs = d[..., ::s, ::s], valid[..., ::s, ::s].to(d.dtype)
            v_grad = (ds[..., :-2, :] - ds[..., 2:, :]).abs() * vs[..., :-2, :] * vs[..., 2:, :]
            h_grad = (ds[..., :, :-2] - ds[..., :, 2:]).abs() * vs[..., :, :-2] * vs[..., :, 2:]
            n = vs.flatten(1).sum(1).clamp(min=1.0)
            total = total + (v_grad.flatten(1).sum(1) + h_grad.flatten(1).sum(1)) / n
        return total

    def forward(self, pred: Tensor, target: Tensor, **kwargs) -> Tensor:
        return self.loss_weight * self.per_image(pred, target).mean()
