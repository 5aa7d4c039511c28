"""What the one-call APIs accept: image paths, folders, glob patterns, RGB arrays, PIL images, or lists of them.

Arrays are RGB (as PIL, scikit-image and torchcodec give them, and as the rest of pe_dense uses); the OpenMMLab
pipelines read BGR, so arrays are flipped once on the way in. Paths go to the pipeline untouched, so a path and
the array of the same picture give identical results.
"""
from __future__ import annotations

import glob
import os
from typing import Any, List, Sequence, Tuple

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_paths(spec: str) -> List[str]:
    """One path, a folder (its images, sorted) or a glob pattern (sorted matches); raises naming what is missing."""
    if os.path.isdir(spec):
        paths = sorted(os.path.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise FileNotFoundError(f"folder {spec} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        return paths
    if _is_glob(spec):
        paths = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not paths:
            raise FileNotFoundError(f"glob {spec!r} matches no files; quote it so the shell does not expand it")
        return paths
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"image {spec} not found (relative paths start at {os.getcwd()})")
    return [spec]


def _as_rgb_array(img: Any) -> np.ndarray:
    if hasattr(img, "convert") and hasattr(img, "size"):  # PIL image
        img = np.asarray(img.convert("RGB"))
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"an image array must be (H, W, 3) RGB (or (H, W) grey, (H, W, 4) RGBA), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 RGB, got {arr.dtype}: convert with "
                         "(x * 255).clip(0, 255).astype(np.uint8) for [0, 1] floats")
    return np.ascontiguousarray(arr[..., :3])


def normalise_inputs(inputs: Any) -> Tuple[List[Tuple[str, Any]], bool]:
    """``[(name, path or RGB array), ...]`` and whether a single image was given (then one result is returned)."""
    single = not isinstance(inputs, (list, tuple)) and not (isinstance(inputs, str) and
                                                           (os.path.isdir(inputs) or _is_glob(inputs)))
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:  # a batch of frames
        inputs, single = list(inputs), False
    items: Sequence[Any] = [inputs] if not isinstance(inputs, (list, tuple)) else inputs
    out: List[Tuple[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            out += [(p, p) for p in expand_paths(os.fspath(item))]
        else:
            out.append((f"image_{i:05d}", _as_rgb_array(item)))
    return out, single


def pipeline_item(item: Any) -> Any:
    """What mmdet/mmseg's ``InferencerLoader`` takes: the path, or the BGR array."""
    return item if isinstance(item, str) else np.ascontiguousarray(item[..., ::-1])


def inference_pipeline(pipeline_cfg: list, loader: str) -> list:
    """The config's test pipeline for unlabelled images: annotation loaders dropped, the image loader (mmcv's
    ``LoadImageFromFile`` or a subclass such as ``CheckedLoadImageFromFile``) replaced by ``loader``, which reads
    paths and arrays alike. ``img_id`` is dropped from the packed meta keys (there is no dataset)."""
    out = []
    found = False
    for t in pipeline_cfg:
        t = dict(t)
        name = str(t["type"]).split(".")[-1]
        if "Annotation" in name:
            continue
        if name.endswith("LoadImageFromFile"):
            t = {"type": loader}
            found = True
        if "meta_keys" in t:
            t["meta_keys"] = tuple(k for k in t["meta_keys"] if k != "img_id")
        out.append(t)
    if not found:
        raise ValueError(f"the config's test pipeline has no image loader ({[t['type'] for t in pipeline_cfg]}): its "
                         "first step must be LoadImageFromFile (or CheckedLoadImageFromFile)")
    return out
