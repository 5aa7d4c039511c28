"""Strict loading of detectron2 checkpoints through detectron2's own ``DetectionCheckpointer``.

``DetectionCheckpointer.load`` only logs missing, unexpected and mis-shaped keys (and skips the mis-shaped ones).
For the released PE Mask R-CNN files a silent partial load is a wrong model, so this raises instead.
"""
from __future__ import annotations

from detectron2.checkpoint import DetectionCheckpointer
from torch import nn


class CheckpointKeysError(RuntimeError):
    pass


class StrictDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``load`` raises on missing, unexpected or mis-shaped model keys."""

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        problems = []
        if incompatible.missing_keys:
            problems.append(f"missing ({len(incompatible.missing_keys)}): {', '.join(incompatible.missing_keys[:8])}")
        if incompatible.unexpected_keys:
            problems.append(f"unexpected ({len(incompatible.unexpected_keys)}): "
                            f"{', '.join(incompatible.unexpected_keys[:8])}")
        if incompatible.incorrect_shapes:
            problems.append("mis-shaped (checkpoint vs model): " + ", ".join(
                f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in incompatible.incorrect_shapes[:8]))
        if problems:
            raise CheckpointKeysError(
                "the checkpoint does not fit this detectron2 model: " + "; ".join(problems) + ". Build the config "
                "the file was trained with (configs/d2/mask_rcnn_pe_g14_{coco,lvis}.py for the released G files; "
                "model size, num_classes and img_size must match); for our mmdet models convert it instead "
                "(tools/convert_checkpoint.py --kind d2-mask-rcnn)")
        return incompatible


def load_detector_checkpoint(model: nn.Module, path: str) -> dict:
    """Load ``path`` (detectron2 layout: ``{'model': state_dict, ...}`` or a bare state dict; any path or URL
    detectron2 reads) into ``model`` strictly; returns the checkpoint's other entries (iteration, ...)."""
    return StrictDetectionCheckpointer(model).load(path, checkpointables=[])
