"""``ContiguousRoIExtractor``: mmdet's ``SingleRoIExtractor`` made safe for any memory layout of the feature maps.

mmcv's RoIAlign (CPU and CUDA kernels alike) reads its input's raw memory as contiguous NCHW and does not check. A
map that is NCHW in shape but another layout in memory (channels-last after a permute, ``memory_format=
torch.channels_last`` models, a strided slice) is then sampled at the wrong pixels with no error: the RoI heads
train on scrambled features and the loss still falls. Our pyramids emit contiguous maps; this extractor makes the
guarantee at the consumer too (``.contiguous()`` is free on a contiguous map) and gives the RoIs the features' dtype,
which the kernel also assumes.
"""
from __future__ import annotations

from typing import Optional, Tuple

from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class ContiguousRoIExtractor(SingleRoIExtractor):
    """``SingleRoIExtractor`` that hands RoIAlign contiguous maps and RoIs of the maps' dtype; same arguments."""

    def forward(self, feats: Tuple[Tensor, ...], rois: Tensor, roi_scale_factor: Optional[float] = None) -> Tensor:
        feats = tuple(f.contiguous() for f in feats)
        return super().forward(feats, rois.to(feats[0].dtype).contiguous(), roi_scale_factor)
