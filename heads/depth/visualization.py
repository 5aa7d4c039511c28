"""Depth pictures: colour maps (OpenCV's turbo/magma tables, no matplotlib) and ``DepthVisualizationHook``.

The hook follows the project's ``--show-dir`` contract: ``tools/test.py`` sets
``default_hooks.visualization.update(draw=True, test_out_dir=ABS_DIR)`` and every test image is written to
ABS_DIR as photo | predicted depth | ground truth, the two depth maps on one colour scale (black = no
measurement).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional, Sequence

import cv2
import numpy as np
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

COLORMAPS = {"turbo": cv2.COLORMAP_TURBO, "magma": cv2.COLORMAP_MAGMA, "viridis": cv2.COLORMAP_VIRIDIS}


def colorize_depth(depth: np.ndarray, vmin: float, vmax: float, colormap: str = "turbo") -> np.ndarray:
    """(H, W) depth in metres -> (H, W, 3) BGR uint8; near = low end of the map; invalid (<= 0, NaN, inf) black."""
    valid = np.isfinite(depth) & (depth > 0)
    scaled = np.clip((np.where(valid, depth, vmin) - vmin) / max(vmax - vmin, 1e-6), 0, 1)
    out = cv2.applyColorMap((scaled * 255).astype(np.uint8), COLORMAPS[colormap])
    out[~valid] = 0
    return out


def depth_panel(photo_bgr: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray] = None,
                colormap: str = "turbo", vmax: Optional[float] = None) -> np.ndarray:
    """photo | pred | gt (if given) side by side at the prediction's size, one colour scale from 0 to ``vmax``
    (default: the 99th percentile of the valid ground truth, else of the prediction)."""
    h, w = pred.shape
    photo = cv2.resize(photo_bgr, (w, h), interpolation=cv2.INTER_AREA) if photo_bgr.shape[:2] != (h, w) else photo_bgr
    ref = gt if gt is not None and np.isfinite(gt).any() and (gt > 0).any() else pred
    ref_valid = ref[np.isfinite(ref) & (ref > 0)]
    top = vmax or (float(np.percentile(ref_valid, 99)) if ref_valid.size else 1.0)
    parts = [photo, colorize_depth(pred, 0.0, top, colormap)]
    if gt is not None:
        parts.append(colorize_depth(gt, 0.0, top, colormap))
    return np.concatenate(parts, axis=1)


@HOOKS.register_module()
class DepthVisualizationHook(Hook):
    """Writes photo | prediction | ground truth per test image when ``draw`` (see the module doc).

    Args:
        test_out_dir: folder; relative paths go under ``work_dir/timestamp`` (mmseg's convention).
        interval: draw every ``interval``-th test image.
        score_thr: accepted and unused (``tools/test.py`` passes it to every visualization hook).
    """

    def __init__(self, draw: bool = False, interval: int = 1, test_out_dir: Optional[str] = None,
                 colormap: str = "turbo", max_depth: Optional[float] = None, score_thr: Optional[float] = None):
        if colormap not in COLORMAPS:
            raise ValueError(f"colormap={colormap!r}: choose from {sorted(COLORMAPS)}")
        self.draw, self.interval, self.test_out_dir = draw, interval, test_out_dir
        self.colormap, self.max_depth = colormap, max_depth
        self._count = 0

    def before_test(self, runner) -> None:
        self._count = 0

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs: Sequence = ()) -> None:
        if not self.draw:
            return
        out_dir = self.test_out_dir or "vis_depth"
        if not osp.isabs(out_dir):
            out_dir = osp.join(runner.work_dir, runner.timestamp, out_dir)
        os.makedirs(out_dir, exist_ok=True)
        for sample in outputs:
            self._count += 1
            if (self._count - 1) % self.interval:
                continue
            pred = sample.pred_depth_map.data.squeeze().float().cpu().numpy()
            gt = sample.gt_depth_map.data.squeeze().float().cpu().numpy() if "gt_depth_map" in sample else None
            photo = cv2.imread(sample.img_path, cv2.IMREAD_COLOR)
            if photo is None:
                raise FileNotFoundError(f"cannot read {sample.img_path} to draw its depth")
            panel = depth_panel(photo, pred, gt, self.colormap, self.max_depth)
            name = osp.splitext(osp.basename(sample.img_path))[0] + "_depth.png"
            cv2.imwrite(osp.join(out_dir, name), panel)
