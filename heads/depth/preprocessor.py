"""``DepthDataPreProcessor``: mmseg's ``SegDataPreProcessor`` that pads ``gt_depth_map`` with 0 (= no measurement).

mmseg 1.2.2's ``stack_batch`` pads every ground-truth map with ``seg_pad_val`` (255 by default, the segmentation
ignore index), so padded depth pixels become 255 m targets: valid for any loss or metric without an upper range
check. Here the padded border of the depth map is reset to ``depth_pad_val`` after mmseg pads, whatever
``seg_pad_val`` is (semantic maps keep theirs).
"""
from __future__ import annotations

from typing import Any, Dict

from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS


@MODELS.register_module()
class DepthDataPreProcessor(SegDataPreProcessor):
    """Segmentation pre-processor (normalise, pad, stack) whose depth padding is ``depth_pad_val`` (0: invalid)."""

    def __init__(self, *args, depth_pad_val: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.depth_pad_val = depth_pad_val

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        out = super().forward(data, training)
        for sample in out.get("data_samples") or []:
            if "gt_depth_map" not in sample or "padding_size" not in sample.metainfo:
                continue
            left, right, top, bottom = sample.padding_size
            depth = sample.gt_depth_map.data
            h, w = depth.shape[-2:]
            if right:
                depth[..., :, w - right:] = self.depth_pad_val
            if bottom:
                depth[..., h - bottom:, :] = self.depth_pad_val
            if left:
                depth[..., :, :left] = self.depth_pad_val
            if top:
                depth[..., :top, :] = self.depth_pad_val
        return out
