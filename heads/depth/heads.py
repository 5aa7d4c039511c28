"""Depth decode heads on mmseg's ``BaseDecodeHead`` interface, and the linear (1x1 conv) head.

mmseg's own depth head (``VPDDepthHead``) shows the pattern we follow: subclass ``BaseDecodeHead`` for its
``predict``/``loss`` plumbing, skip its segmentation ``__init__`` (classes, ``conv_seg``), and compute depth
losses against ``gt_depth_map``. Heads accept what ``PEBackbone`` returns: maps ``(B, W, h, w)`` or, with
``output_cls_token=True``, ``(map, cls (B, W))`` pairs.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor, nn


def split_features(inputs: Sequence) -> Tuple[List[Tensor], Optional[List[Tensor]]]:
    """Backbone outputs -> (maps, cls tokens or None)."""
    if all(isinstance(x, (tuple, list)) for x in inputs):
        return [x[0] for x in inputs], [x[1] for x in inputs]
    return list(inputs), None


class DepthOutput(nn.Module):
    """Turns the last feature map into metric depth (B, 1, H, W).

    ``regression``: one channel, depth = ReLU(x) + min_depth (``activation='relu'``, DINOv2's default) or
    sigmoid(x) * max_depth (``'sigmoid'``, DINOv2's ``scale_up`` and mmseg's VPD head). A freshly initialised head
    can put every pixel on the ReLU's flat side (zero gradient, a constant min_depth for good: seen with DPT on
    random features), which the sigmoid cannot. ``bins``: ``n_bins`` channels,
    scores = ReLU(x) + 0.1 normalised to sum 1 over bins (DINOv2's "linear" normalisation), depth = the
    expectation of the bin centres. ``spacing='log'`` places the centres uniformly in log depth over
    [min_depth, max_depth]; DINOv2's "SID" calls ``torch.logspace(min_depth, max_depth)``, i.e. 10^0.001 to 10^10 m.
    """

    def __init__(self, mode: str = "regression", n_bins: int = 256, spacing: str = "linear",
                 min_depth: float = 1e-3, max_depth: float = 10.0, bin_eps: float = 0.1, activation: str = "relu"):
        super().__init__()
        if mode not in ("regression", "bins"):
            raise ValueError(f"output mode {mode!r}: use 'regression' or 'bins'")
        if activation not in ("relu", "sigmoid"):
            raise ValueError(f"regression activation {activation!r}: use 'relu' or 'sigmoid'")
        self.mode, self.min_depth, self.max_depth, self.bin_eps = mode, min_depth, max_depth, bin_eps
        self.activation = activation
        self.out_channels = 1 if mode == "regression" else n_bins
        if mode == "bins":
            if spacing == "linear":
                centres = torch.linspace(min_depth, max_depth, n_bins)
            elif spacing == "log":
                centres = torch.exp(torch.linspace(float(torch.log(torch.tensor(min_depth))),
                                                   float(torch.log(torch.tensor(max_depth))), n_bins))
            else:
                raise ValueError(f"bin spacing {spacing!r}: use 'linear' or 'log'")
            self.register_buffer("bin_centres", centres, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "regression":
            if self.activation == "sigmoid":
                return torch.sigmoid(x) * self.max_depth
            return F.relu(x) + self.min_depth
        scores = F.relu(x) + self.bin_eps
        probs = scores / scores.sum(dim=1, keepdim=True)
        return torch.einsum("bkhw,k->bhw", probs, self.bin_centres.to(probs.dtype)).unsqueeze(1)


class DepthDecodeHead(BaseDecodeHead):
    """Shared plumbing: output activation, loss construction and depth losses against ``gt_depth_map``."""

    num_classes = 1
    out_channels = 1

    def __init__(self, output: Optional[dict] = None, loss_decode=(dict(type="DepthSiLogLoss"),),
                 align_corners: bool = False, init_cfg: Optional[dict] = None):
        super(BaseDecodeHead, self).__init__(init_cfg=init_cfg)  # skip the segmentation __init__, as VPDDepthHead
        self.align_corners = align_corners
        self.depth_output = DepthOutput(**(output or {}))
        losses = [loss_decode] if isinstance(loss_decode, dict) else list(loss_decode)
        self.loss_decode = nn.ModuleList(MODELS.build(cfg) for cfg in losses)

    def extra_repr(self) -> str:  # BaseDecodeHead's names segmentation attributes we do not have
        return f"align_corners={self.align_corners}"

    def loss_by_feat(self, pred_depth: Tensor, batch_data_samples) -> dict:
        gt = torch.stack([s.gt_depth_map.data for s in batch_data_samples]).to(pred_depth)
        pred = F.interpolate(pred_depth, size=gt.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        losses: dict = {}
        for loss in self.loss_decode:
            losses[loss.loss_name] = losses.get(loss.loss_name, 0) + loss(pred, gt)
        return losses


@MODELS.register_module()
class LinearDepthHead(DepthDecodeHead):
    """DINOv2's linear depth probe: chosen layers (optionally with the cls token concatenated to every token),
    upsampled ``upsample`` times bilinearly, BatchNorm, one 1x1 conv to 1 channel (regression) or the bins.

    Args:
        in_channels: width of one backbone map.
        in_index: which backbone outputs to concatenate (DINOv2 "linear": the last; "linear4": four).
        cls_token: 'concat' (needs ``output_cls_token=True`` in the backbone) or 'ignore'.
    """

    def __init__(self, in_channels: int, in_index: Sequence[int] = (-1,), cls_token: str = "ignore",
                 upsample: int = 4, use_bn: bool = True, **kwargs):
        super().__init__(**kwargs)
        if cls_token not in ("concat", "ignore"):
            raise ValueError(f"cls_token={cls_token!r}: use 'concat' or 'ignore'")
        self.in_index, self.cls_token, self.upsample = tuple(in_index), cls_token, upsample
        channels = in_channels * len(self.in_index) * (2 if cls_token == "concat" else 1)
        self.bn = nn.BatchNorm2d(channels) if use_bn else nn.Identity()
        self.conv_depth = nn.Conv2d(channels, self.depth_output.out_channels, kernel_size=1)

    def forward(self, inputs) -> Tensor:
        maps, cls = split_features(inputs)
        if self.cls_token == "concat" and cls is None:
            raise ValueError("LinearDepthHead(cls_token='concat') needs (map, cls) pairs: set the backbone's "
                             "output_cls_token=True, or cls_token='ignore' for models without a cls token (G)")
        feats = []
        for i in self.in_index:
            m = maps[i]
            if self.cls_token == "concat":
                m = torch.cat([m, cls[i][:, :, None, None].expand_as(m)], dim=1)
            if feats and m.shape[-2:] != feats[0].shape[-2:]:
                m = F.interpolate(m, size=feats[0].shape[-2:], mode="bilinear", align_corners=self.align_corners)
            feats.append(m)
        x = torch.cat(feats, dim=1)
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=self.align_corners)
        return self.depth_output(self.conv_depth(self.bn(x)))
