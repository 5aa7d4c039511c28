"""Track one video or a DAVIS split end to end: frames -> batched features -> propagation -> PNGs, overlay, J&F.

Features are computed once per frame, a batch at a time, and streamed into the propagator, so memory does not
grow with video length. ``cfg`` is the tracking config (``configs/tracking/davis_label_propagation.py``) as a
dict-like with the ``data``, ``propagation``, ``metric`` and ``output`` sections.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .features import FeatureExtractor
from .metrics import JFResult, score_sequence, write_tables
from .propagate import LabelPropagator
from .resize import protocol_frame_size
from .video import (
    ImageFolderFrames,
    OverlayWriter,
    davis_palette,
    davis_sequence_files,
    davis_sequences,
    overlay_labels,
    read_label_png,
    write_label_png,
)

logger = logging.getLogger(__name__)


def _progress(total: int, desc: str, enabled: bool):
    """A tqdm bar (stderr) when enabled and available, else a no-op with the same interface."""
    if enabled:
        try:
            from tqdm import tqdm
            return tqdm(total=total, desc=desc, unit="frame", leave=False)
        except ImportError:
            pass

    class _Silent:
        def update(self, n=1):
            pass

        def close(self):
            pass

    return _Silent()


def check_first_mask(first_mask: np.ndarray, frame_size, mask_name: str, void_label: Optional[int]) -> np.ndarray:
    """Validate the first-frame mask against the frames; void pixels become background (they are no object)."""
    if tuple(first_mask.shape) != tuple(frame_size):
        raise ValueError(f"{mask_name} is {first_mask.shape[1]}x{first_mask.shape[0]} but the video frames are "
                         f"{frame_size[1]}x{frame_size[0]}: draw the mask on the first frame at full size (or "
                         "resize it with nearest-neighbour, never bilinear, to the frame size)")
    if void_label is not None and (first_mask == void_label).any():
        logger.info("%s: void label %d treated as background", mask_name, void_label)
        first_mask = np.where(first_mask == void_label, 0, first_mask)
    if first_mask.max() == 0:
        logger.warning("%s has no object (all background): every frame will be predicted as background",
                       mask_name)
    return first_mask


def track_frames(source, first_mask: np.ndarray, extractor: FeatureExtractor, cfg: Mapping,
                 on_frame: Optional[Callable[[int, np.ndarray, np.ndarray], None]] = None,
                 progress: bool = False, desc: str = "tracking", keep_masks: bool = True) -> List[np.ndarray]:
    """Propagate ``first_mask`` through ``source`` (see ``video.py``); returns one uint8 (H, W) map per frame
    (an empty list with ``keep_masks=False``, for long videos whose masks are only streamed to disk).

    ``on_frame(index, frame_rgb, labels)`` is called as each frame is done (for streaming outputs).
    """
    data, prop = cfg["data"], cfg["propagation"]
    size = protocol_frame_size(*source.size, short_side=data["short_side"],
                               long_side_multiple=data["long_side_multiple"], patch_size=extractor.patch_size)
    propagator: Optional[LabelPropagator] = None
    masks: List[np.ndarray] = []
    done = 0
    bar = _progress(len(source), desc, progress)
    try:
        for batch in source.iter_batches(extractor.batch_size):
            feats = extractor.frames_to_features(batch, size)
            for frame, feat in zip(batch, feats, strict=True):
                if propagator is None:
                    propagator = LabelPropagator(feat, first_mask, patch_size=extractor.patch_size, **prop)
                    labels = np.asarray(first_mask)
                else:
                    labels = propagator.step(feat)[0].cpu().numpy()
                labels = labels.astype(np.uint8)
                if keep_masks:
                    masks.append(labels)
                if on_frame is not None:
                    on_frame(done, frame, labels)
                done += 1
                bar.update(1)
    finally:
        bar.close()
    return masks


def run_video(source, first_mask: np.ndarray, extractor: FeatureExtractor, cfg: Mapping, out_dir: str,
              name: str, palette: Optional[np.ndarray] = None, gt: Optional[Sequence[np.ndarray]] = None,
              progress: bool = False, keep_masks: Optional[bool] = None) -> Dict[str, object]:
    """Track one video and write ``out_dir/name/<frame>.png`` plus ``out_dir/overlays/name.mp4``.

    With ``gt`` (one label map per frame) the video is scored; returns timing, the object scores and the masks
    (kept in memory only with ``keep_masks``, which defaults to "when ``gt`` is given").
    """
    out_cfg = cfg["output"]
    palette = davis_palette() if palette is None else palette
    first_mask = check_first_mask(first_mask, source.size, f"first mask of {name}", cfg["data"].get("void_label"))
    writer = OverlayWriter(os.path.join(out_dir, "overlays", name), fps=out_cfg.get("overlay_fps") or source.fps,
                           mode=out_cfg["overlay"])

    def save(index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        write_label_png(os.path.join(out_dir, name, f"{source.names[index]}.png"), labels, palette)
        writer.write(overlay_labels(frame, labels, palette, out_cfg["overlay_alpha"]))

    start = time.perf_counter()
    try:
        masks = track_frames(source, first_mask, extractor, cfg, on_frame=save, progress=progress, desc=name,
                             keep_masks=gt is not None if keep_masks is None else keep_masks)
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    result: Dict[str, object] = dict(name=name, masks=masks, frames=len(source), seconds=seconds,
                                     fps=len(source) / max(seconds, 1e-9),
                                     overlay=writer.path, objects=None)
    if gt is not None:
        result["objects"] = score_sequence(gt, masks, name, **cfg["metric"])
    logger.info("%s: %d frames in %.1fs (%.2f frames/s)", name, len(source), seconds, result["fps"])
    return result


def run_davis(root: str, extractor: FeatureExtractor, cfg: Mapping, out_dir: str,
              sequences: Optional[Sequence[str]] = None, progress: bool = False) -> Optional[JFResult]:
    """Track every sequence of a DAVIS split into ``out_dir`` (DAVIS result layout) and score the ones whose
    annotations cover all frames; writes the J&F CSV tables and returns the result (None if nothing scored)."""
    davis_cfg = cfg["davis"]
    names = list(sequences) if sequences else davis_sequences(root, davis_cfg["split"], davis_cfg["year"])
    scored = []
    for i, seq in enumerate(names):
        frames, annotations = davis_sequence_files(root, seq, davis_cfg["resolution"])
        first_png = os.path.join(os.path.dirname(annotations[0]) if annotations else
                                 os.path.join(root, "Annotations", davis_cfg["resolution"], seq),
                                 os.path.splitext(os.path.basename(frames[0]))[0] + ".png")
        first_mask, palette = read_label_png(first_png)
        source = ImageFolderFrames(frames, fps=cfg["output"].get("overlay_fps") or 24.0)
        gt = None
        if len(annotations) == len(frames):
            gt = [read_label_png(p)[0] for p in annotations]
        else:
            logger.info("%s: %d annotations for %d frames, not scored", seq, len(annotations), len(frames))
        logger.info("[%d/%d] %s: %d frames", i + 1, len(names), seq, len(frames))
        res = run_video(source, first_mask, extractor, cfg, out_dir, seq, palette=palette, gt=gt, progress=progress)
        if res["objects"] is not None:
            scored += res["objects"]
    if not scored:
        return None
    result = JFResult(scored)
    write_tables(result, out_dir)
    return result
