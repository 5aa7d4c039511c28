"""``CheckedLoadDepthAnnotation``: mmseg's ``LoadDepthAnnotation`` that names bad depth files instead of training on
them. NYU depth PNGs are single-channel uint16 millimetres (0 = no measurement) of the photo's size; an 8-bit or
colour PNG (a visualisation saved by mistake), a missing file or another size is an error that says which.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict

import numpy as np
from mmengine import fileio
from mmseg.datasets.transforms import LoadDepthAnnotation
from mmseg.registry import TRANSFORMS
from mmseg.utils import datafrombytes

from pe_dense.errors import PEDenseError


class DepthDataError(PEDenseError, ValueError):
    """A depth annotation that cannot be a uint16-millimetre depth map of its photo."""


@TRANSFORMS.register_module()
class CheckedLoadDepthAnnotation(LoadDepthAnnotation):
    """Load ``gt_depth_map`` (float32, ``* depth_rescale_factor``: 1e-3 turns millimetres into metres) after checking
    that the file exists, is uint16 single-channel, and has the photo's size (load the image first)."""

    def transform(self, results: Dict) -> Dict:
        path = results["depth_map_path"]
        img_path = results.get("img_path", "?")
        if "://" not in str(path) and not osp.isfile(path):
            raise FileNotFoundError(
                f"depth annotation {path} for image {img_path} does not exist: the NYU layout is "
                "images/<split>/NAME.jpg with annotations/<split>/NAME.png (uint16 millimetres); add the PNG or "
                "remove the image")
        depth = datafrombytes(fileio.get(path, self.backend_args), backend=self.decode_backend)
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise DepthDataError(
                f"depth annotation {path} is {depth.dtype} with shape {depth.shape}; expected a single-channel "
                "uint16 PNG of millimetres (0 = no measurement). Save depth as "
                "(depth_m * 1000).round().astype(np.uint16) with cv2.imwrite, not a colour-mapped or 8-bit image")
        ori = results.get("ori_shape")
        if ori is not None and tuple(depth.shape) != tuple(ori[:2]):
            raise DepthDataError(
                f"depth annotation {path} is {depth.shape[0]}x{depth.shape[1]} but its image {img_path} is "
                f"{ori[0]}x{ori[1]}: the two files do not belong together (or one was resized); depth and photo must "
                "be pixel-aligned at the same size")
        depth = depth.astype(np.float32) if self.to_float32 else depth
        results["gt_depth_map"] = depth * self.depth_rescale_factor
        results.setdefault("seg_fields", []).append("gt_depth_map")
        results["depth_rescale_factor"] = self.depth_rescale_factor
        return results
