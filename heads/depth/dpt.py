"""DPT depth head (Ranftl et al. 2021) on PE token maps: reassemble + fusion, from one layer or four.

Reassemble, per branch i = 0..3: readout (``project``: concat the cls token to every token, Linear(2W, W) + GELU;
``ignore``: drop it), 1x1 conv to ``post_process_channels[i]`` (default W/8, W/4, W/2, W), resample to strides
p/4, p/2, p, 2p (transposed conv x4, x2, identity, 3x3 conv stride 2), 3x3 conv to ``channels`` (256).
Fusion: from the coarsest branch, residual conv units, add the next branch, upsample to its size; then the depth
head: 3x3 conv to channels/2, x2 upsample, 3x3 conv to 32, ReLU, 1x1 conv to the output (1 or the bins).

One layer (PE's NYU setting, "DPT head on one layer"): the same token map enters all four reassemble branches,
each with its own projection and resampling, so the four scales come from the resampling alone. Four layers
(DINOv2's setting): one layer per branch, shallow to deep.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn

from .heads import DepthDecodeHead, split_features


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convs (DPT without batch norm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds the (refined) skip branch, refines, upsamples to the next branch's size, projects (1x1)."""

    def __init__(self, channels: int, align_corners: bool = True):
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels)
        self.unit = ResidualConvUnit(channels)
        self.project = nn.Conv2d(channels, channels, 1)
        self.align_corners = align_corners

    def forward(self, x: Tensor, skip: Optional[Tensor], size) -> Tensor:
        if skip is not None:
            x = x + self.skip_unit(skip)
        x = self.unit(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
        return self.project(x)


@MODELS.register_module()
class DPTDepthHead(DepthDecodeHead):
    """DPT depth head. ``in_index``: the backbone outputs feeding the four branches; None = all four outputs
    when there are four, or the single output repeated when there is one.

    Args:
        in_channels: width W of the backbone maps.
        channels: fusion width (256 in DPT and DINOv2).
        post_process_channels: reassemble widths; default (W/8, W/4, W/2, W) as DINOv2.
        readout: 'project' (needs the backbone's ``output_cls_token=True``) or 'ignore' (models without a cls
            token, e.g. G).
    """

    def __init__(self, in_channels: int, channels: int = 256, post_process_channels: Optional[Sequence[int]] = None,
                 readout: str = "project", in_index: Optional[Sequence[int]] = None, head_channels: int = 32,
                 **kwargs):
        super().__init__(**kwargs)
        if readout not in ("project", "ignore"):
            raise ValueError(f"readout={readout!r}: use 'project' or 'ignore'")
        pp = tuple(post_process_channels or (in_channels // 8, in_channels // 4, in_channels // 2, in_channels))
        if len(pp) != 4:
            raise ValueError(f"post_process_channels needs 4 widths, got {pp}")
        self.readout, self.in_index = readout, None if in_index is None else tuple(in_index)
        if self.in_index is not None and len(self.in_index) != 4:
            raise ValueError(f"in_index needs 4 entries (repeat one index for a single layer), got {self.in_index}")
        if readout == "project":
            self.readout_proj = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * in_channels, in_channels), nn.GELU()) for _ in range(4))
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in pp)
        self.resize = nn.ModuleList([
            nn.ConvTranspose2d(pp[0], pp[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(pp[1], pp[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(pp[3], pp[3], kernel_size=3, stride=2, padding=1),
        ])
        self.to_fusion = nn.ModuleList(nn.Conv2d(c, channels, 3, padding=1, bias=False) for c in pp)
        self.fusion = nn.ModuleList(FusionBlock(channels) for _ in range(4))
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, head_channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(head_channels, self.depth_output.out_channels, 1))

    def _branch_inputs(self, inputs):
        maps, cls = split_features(inputs)
        index = self.in_index
        if index is None:
            if len(maps) not in (1, 4):
                raise ValueError(f"DPTDepthHead got {len(maps)} backbone outputs: give it 1 or 4 (out_indices), "
                                 "or set in_index to 4 indices")
            index = (0, 0, 0, 0) if len(maps) == 1 else (0, 1, 2, 3)
        if self.readout == "project" and cls is None:
            raise ValueError("DPTDepthHead(readout='project') needs (map, cls) pairs: set the backbone's "
                             "output_cls_token=True, or readout='ignore' for models without a cls token (G)")
        return [(maps[i], None if cls is None else cls[i]) for i in index]

    def forward(self, inputs) -> Tensor:
        levels = []
        for b, (m, cls) in enumerate(self._branch_inputs(inputs)):
            if self.readout == "project":
                B, W, h, w = m.shape
                tokens = m.flatten(2).transpose(1, 2)
                tokens = self.readout_proj[b](torch.cat([tokens, cls[:, None].expand(-1, h * w, -1)], dim=-1))
                m = tokens.transpose(1, 2).reshape(B, W, h, w)
            levels.append(self.to_fusion[b](self.resize[b](self.projects[b](m))))
        x = None
        for b in (3, 2, 1, 0):  # coarse to fine; the finest output is upsampled x2
            size = levels[b - 1].shape[-2:] if b > 0 else tuple(2 * s for s in levels[0].shape[-2:])
            x = self.fusion[b](levels[b] if x is None else x, None if x is None else levels[b], size)
        return self.depth_output(self.head(x))
