"""Feature pyramids from a plain ViT: ViTDet's SimpleFeaturePyramid and the DETA pyramid (PE_FACTS section 4).

Each neck declares the channels and stride it expects from the backbone and its own output strides, and
``check_pyramid_contract`` asserts that a backbone and a neck agree (SAM 2's trunk/neck channel assertion,
detectron2's stride contract). A neck may read one backbone output or a different one per level.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.necks import ChannelMapper
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map; returns a contiguous NCHW tensor.

    Normalising a channels-last view and permuting back yields a tensor whose memory is NHWC. Convolutions accept
    that, but compiled ops that index raw memory as NCHW (mmcv's RoIAlign, on CPU and CUDA) then read the wrong
    pixels, silently. So the map is laid out as NCHW before it leaves: every pyramid level is contiguous.
    """

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2).contiguous()


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "LN":
        return LayerNorm2d(channels, eps=1e-6)
    if kind.startswith("GN"):
        return nn.GroupNorm(int(kind[2:] or 32), channels)
    if kind in ("", "none", None):
        return nn.Identity()
    raise ValueError(f"norm {kind!r} not supported; use 'LN', 'GN32' or 'none'")


def _rescale(channels: int, scale: float, norm: str) -> Tuple[nn.Module, int]:
    """Resampling of a stride-s map to stride s/scale; returns the module and its output channels."""
    if scale == 4.0:
        half, quarter = channels // 2, channels // 4
        return nn.Sequential(nn.ConvTranspose2d(channels, half, 2, 2), _norm(norm, half), nn.GELU(),
                             nn.ConvTranspose2d(half, quarter, 2, 2)), quarter
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, 2, 2), channels // 2
    if scale == 1.0:
        return nn.Identity(), channels
    if scale == 0.5:
        return nn.MaxPool2d(2, 2), channels
    raise ValueError(f"scale factor {scale} not supported; use 4, 2, 1 or 0.5")


def _per_level(index: Union[int, Sequence[int]], n: int) -> List[int]:
    idx = [index] * n if isinstance(index, int) else list(index)
    if len(idx) != n:
        raise ValueError(f"in_index lists {len(idx)} inputs for {n} pyramid levels")
    return idx


class _PyramidBase(nn.Module):
    """Shared input contract: ``in_channels`` and ``input_stride`` of the backbone outputs it reads."""

    in_channels: int
    input_stride: int
    in_index: List[int]
    strides: Tuple[int, ...]

    def _inputs(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        picked = []
        for i in self.in_index:
            if not -len(feats) <= i < len(feats):
                raise IndexError(f"{type(self).__name__} reads backbone output {i}, but the backbone returned "
                                 f"{len(feats)}; set the backbone's out_indices or the neck's in_index")
            x = feats[i]
            if x.shape[1] != self.in_channels:
                raise ValueError(f"{type(self).__name__} expects {self.in_channels} channels, backbone output {i} "
                                 f"has {x.shape[1]}: set the neck's in_channels to the backbone width")
            picked.append(x)
        return picked


class SimpleFeaturePyramid(_PyramidBase):
    """ViTDet's pyramid: rescale one stride-16 map by ``scale_factors``, 1x1 + 3x3 conv with norm, plus an
    optional max-pool level; outputs at strides ``input_stride / scale`` (4, 8, 16, 32, then 64)."""

    def __init__(self, in_channels: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), add_pool_level: bool = True,
                 norm: str = "LN", in_index: Union[int, Sequence[int]] = -1, input_stride: int = 16):
        super().__init__()
        self.in_channels, self.input_stride = in_channels, input_stride
        self.in_index = _per_level(in_index, len(scale_factors))
        self.add_pool_level = add_pool_level
        self.stages = nn.ModuleList()
        for scale in scale_factors:
            rescale, ch = _rescale(in_channels, float(scale), norm)
            self.stages.append(nn.Sequential(OrderedDict([
                ("rescale", rescale),
                ("lateral", nn.Sequential(nn.Conv2d(ch, out_channels, 1, bias=False), _norm(norm, out_channels))),
                ("output", nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                         _norm(norm, out_channels))),
            ])))
        strides = [int(input_stride / s) for s in scale_factors]
        self.strides = tuple(strides + ([strides[-1] * 2] if add_pool_level else []))
        self.out_channels = out_channels

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        outs = [stage(x) for stage, x in zip(self.stages, self._inputs(feats))]
        if self.add_pool_level:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)


class DETAPyramid(_PyramidBase):
    """DETA's pyramid on PE: strides 8 (2x transposed conv to half width), 16 (identity), 32 (max-pool), each
    projected by a 1x1 conv + GN(32) to ``out_channels``, plus stride-2 3x3 conv + GN levels (64, 128).

    The projections are mmdet's ``ChannelMapper`` (as in mmdet's DINO configs), with biases as in the release.
    """

    def __init__(self, in_channels: int, out_channels: int = 256, num_outs: int = 5,
                 in_index: Union[int, Sequence[int]] = -1, input_stride: int = 16, num_groups: int = 32):
        super().__init__()
        if num_outs < 3:
            raise ValueError(f"DETAPyramid makes at least 3 levels, num_outs={num_outs}")
        self.in_channels, self.input_stride = in_channels, input_stride
        self.in_index = _per_level(in_index, 3)
        self.fpn1 = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, 2)
        self.mapper = ChannelMapper(
            in_channels=[in_channels // 2, in_channels, in_channels], out_channels=out_channels, kernel_size=1,
            norm_cfg=dict(type="GN", num_groups=num_groups), act_cfg=None, bias=True, num_outs=num_outs)
        self.strides = tuple(input_stride // 2 * 2 ** i for i in range(num_outs))
        self.out_channels = out_channels

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        x8, x16, x32 = self._inputs(feats)
        return self.mapper((self.fpn1(x8), x16, F.max_pool2d(x32, 2, 2)))


def check_pyramid_contract(backbone: nn.Module, neck: nn.Module) -> None:
    """Raise if the backbone's output channels/strides differ from what the neck was built for."""
    channels, strides = getattr(backbone, "out_channels", None), getattr(backbone, "out_strides", None)
    if channels is None or not hasattr(neck, "in_index"):
        return
    for i in neck.in_index:
        if channels[i] != neck.in_channels or strides[i] != neck.input_stride:
            raise ValueError(
                f"{type(neck).__name__} was built for {neck.in_channels} channels at stride {neck.input_stride}, "
                f"but backbone output {i} has {channels[i]} channels at stride {strides[i]}: set the neck's "
                f"in_channels={channels[i]} and input_stride={strides[i]} (or the backbone's patch size)")
