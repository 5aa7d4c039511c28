"""``SlidingDepthEstimator``: mmseg's ``DepthEstimator`` whose test modes do what they say.

mmseg 1.2.2 dispatches ``test_cfg.mode='slide'`` to whole-image inference: an ``if slide / if slide_flip / else
whole`` chain overwrites the slide result (mmseg #3655). Here ``slide`` averages overlapping windows
(``EncoderDecoder.slide_inference``: crop_size, stride, a per-pixel count), ``slide_flip`` adds the mirrored
windows, and ``test_cfg.flip=True`` averages any mode with its horizontally flipped run (the flip TTA of the NYU
protocol, for depth: mmseg's ``SegTTAModel`` merges class scores, not depths).
"""
from __future__ import annotations

import logging
from typing import List

from mmengine.logging import print_log
from mmseg.models.segmentors import DepthEstimator
from mmseg.registry import MODELS
from torch import Tensor

MODES = ("whole", "slide", "slide_flip")


@MODELS.register_module()
class SlidingDepthEstimator(DepthEstimator):
    """Depth estimator with working ``slide`` inference and flip averaging (``test_cfg.flip``)."""

    def _run(self, inputs: Tensor, batch_img_metas: List[dict], mode: str) -> Tensor:
        if mode == "slide":
            return self.slide_inference(inputs, batch_img_metas)
        if mode == "slide_flip":
            return self.slide_flip_inference(inputs, batch_img_metas)
        return self.whole_inference(inputs, batch_img_metas)

    def inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        mode = self.test_cfg.get("mode", "whole")
        if mode not in MODES:
            raise ValueError(f"test_cfg.mode={mode!r}: use one of {MODES} (slide needs crop_size and stride)")
        if not all(m["ori_shape"] == batch_img_metas[0]["ori_shape"] for m in batch_img_metas):
            print_log("Image shapes are different in the batch.", logger="current", level=logging.WARN)
        depth = self._run(inputs, batch_img_metas, mode)
        if self.test_cfg.get("flip", False):
            depth = (depth + self._run(inputs.flip(-1), batch_img_metas, mode).flip(-1)) / 2
        return depth
