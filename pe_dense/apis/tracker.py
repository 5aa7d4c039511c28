"""``Tracker``: first-frame mask in, one mask per frame out (label propagation on frozen PE-Spatial features).

Torch-level only (no OpenMMLab). The protocol values come from the tracking config
(``configs/tracking/davis_label_propagation.py`` by default), exactly as ``tools/track.py`` uses them.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, List, Optional, Union

import numpy as np

from .precision import cast_weights, resolve_dtype
from .results import Track

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "configs",
                              "tracking", "davis_label_propagation.py")


class ArrayFrames:
    """A frame source (the interface of ``pe_dense.tracking.video``) over in-memory RGB frames."""

    def __init__(self, frames, fps: float = 24.0):
        self.frames = [np.asarray(f) for f in frames]
        if not self.frames:
            raise ValueError("no frames given")
        bad = [i for i, f in enumerate(self.frames) if f.ndim != 3 or f.shape[-1] != 3 or f.dtype != np.uint8]
        if bad:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB; frame {bad[0]} is "
                             f"{self.frames[bad[0]].dtype} {self.frames[bad[0]].shape}")
        self.size = self.frames[0].shape[:2]
        if any(f.shape[:2] != self.size for f in self.frames):
            raise ValueError("all frames of a video must have one size")
        self.fps = fps
        self.names = [f"{i:05d}" for i in range(len(self.frames))]

    def __len__(self) -> int:
        return len(self.frames)

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.frames), batch_size):
            yield np.stack(self.frames[start:start + batch_size])


def open_source(video: Any):
    """A video file, a folder of frames, or an array/list of RGB frames."""
    from pe_dense.tracking.video import open_frames

    if isinstance(video, (str, os.PathLike)):
        return open_frames(os.fspath(video))
    return ArrayFrames(video)


class Tracker:
    """``Tracker(model_name=None, checkpoint=None, device='cpu', precision='fp32', batch_size=None, config=None,
    cfg_options=None)``; ``tracker(video, first_mask)`` -> ``Track`` (one uint8 label map per frame).

    ``video``: a file (mp4/mkv/..., torchcodec), a folder of frames, or (T, H, W, 3) uint8 RGB frames. ``first_mask``:
    an (H, W) integer label map (0 = background) or the path of a label PNG (its palette is kept).
    """

    def __init__(self, model_name: Optional[str] = None, checkpoint: Optional[str] = None, device: str = "cpu",
                 precision: str = "fp32", batch_size: Optional[int] = None, config: Optional[str] = None,
                 cfg_options: Optional[dict] = None):
        from mmengine.config import Config

        from pe_dense.tracking.features import FeatureExtractor, build_model

        config = config or DEFAULT_CONFIG
        if not os.path.isfile(config):
            raise FileNotFoundError(f"tracking config {config} not found: pass config=PATH to a tracking config "
                                    "such as configs/tracking/davis_label_propagation.py of the pe_dense repository")
        self.cfg = Config.fromfile(config)
        self.cfg.merge_from_dict(dict(cfg_options or {}))
        flags = {"model.name": model_name, "model.checkpoint": checkpoint, "features.batch_size": batch_size,
                 "device": device}
        self.cfg.merge_from_dict({k: v for k, v in flags.items() if v is not None})
        self.dtype = resolve_dtype(precision)
        model = build_model(self.cfg.model.name, self.cfg.model.checkpoint, self.cfg.model.overrides)
        self.model = cast_weights(model, self.dtype)
        self.extractor = FeatureExtractor(self.model, layer=self.cfg.model.layer,
                                          batch_size=self.cfg.features.batch_size, device=self.cfg.device,
                                          norm=self.cfg.model.norm, mean=self.cfg.data.mean, std=self.cfg.data.std)

    def __call__(self, video: Any, first_mask: Union[np.ndarray, str], progress: bool = False) -> Track:
        from pe_dense.tracking.pipeline import check_first_mask, track_frames
        from pe_dense.tracking.video import davis_palette, read_label_png

        source = open_source(video)
        palette = None
        if isinstance(first_mask, (str, os.PathLike)):
            first_mask, palette = read_label_png(os.fspath(first_mask))
        first_mask = check_first_mask(np.asarray(first_mask).astype(np.int64), source.size, "first mask",
                                      self.cfg.data.get("void_label"))
        masks: List[np.ndarray] = track_frames(source, first_mask, self.extractor, self.cfg, progress=progress)
        return Track(masks=masks, palette=davis_palette() if palette is None else palette, names=source.names,
                     fps=source.fps)
