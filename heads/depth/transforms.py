"""``DepthColorAug``: the colour augmentation of the NYU depth recipes (BTS, used by DINOv2's depth training).

With probability ``prob``: gamma in ``gamma_range``, brightness factor in ``brightness_range`` (NYU: 0.75-1.25)
and one factor per colour channel in ``color_range``, on the image in [0, 1], then clipped. mmseg's
``PhotoMetricDistortion`` (contrast, saturation, hue, additive brightness) is a different distribution, and
mmseg's NYU config gets this one from albumentations, which we do not depend on. Depth is untouched.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class DepthColorAug(BaseTransform):
    """Random gamma, brightness and per-channel colour scaling of ``results['img']`` (uint8 or float, 0-255)."""

    def __init__(self, prob: float = 0.5, gamma_range: Tuple[float, float] = (0.9, 1.1),
                 brightness_range: Tuple[float, float] = (0.75, 1.25), color_range: Tuple[float, float] = (0.9, 1.1)):
        self.prob, self.gamma_range = prob, gamma_range
        self.brightness_range, self.color_range = brightness_range, color_range

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results["img"]
        x = img.astype(np.float32) / 255.0
        x = x ** np.random.uniform(*self.gamma_range)
        x = x * np.random.uniform(*self.brightness_range)
        x = x * np.random.uniform(*self.color_range, size=x.shape[-1]).astype(np.float32)
        x = np.clip(x, 0.0, 1.0) * 255.0
        results["img"] = x.round().astype(img.dtype) if img.dtype == np.uint8 else x.astype(img.dtype)
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(prob={self.prob}, gamma_range={self.gamma_range}, "
                f"brightness_range={self.brightness_range}, color_range={self.color_range})")
