"""Frame preprocessing and batched token-feature extraction for label propagation.

Preprocessing follows the reference protocol: the uint8 frame is stretched with OpenCV's bilinear resize
(``cv2.INTER_LINEAR``, as the reference reads frames with OpenCV), scaled to [0, 1] in float32 and normalised
with the model's mean and std (0.5 / 0.5 for PE).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

logger = logging.getLogger(__name__)

PE_MEAN = (0.5, 0.5, 0.5)
PE_STD = (0.5, 0.5, 0.5)


def preprocess_frames(frames: np.ndarray, size: Tuple[int, int], mean: Sequence[float] = PE_MEAN,
                      std: Sequence[float] = PE_STD) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB frames -> (B, 3, h, w) float32 network input of ``size=(h, w)``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (B, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}")
    h, w = size
    resized = np.stack([f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
                        for f in frames])
    x = torch.from_numpy(resized.astype(np.float32)).permute(0, 3, 1, 2) / 255.0
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous()


class FeatureExtractor:
    """Token features of one block of a PE vision tower, computed batch by batch without gradients.

    Args:
        model: a ``PEVisionTransformer`` (anything with ``forward_intermediates`` and ``patch_size`` works).
        layer: block index, Python-style (-1 = last block, the protocol's default for spatial models).
        batch_size: frames per forward pass.
        device: where the model runs; features are returned on that device.
        norm: apply the model's output norm (PE-Spatial has none, so this is a no-op there).
    """

    def __init__(self, model: torch.nn.Module, layer: int = -1, batch_size: int = 4, device: str = "cpu",
                 norm: bool = False, mean: Sequence[float] = PE_MEAN, std: Sequence[float] = PE_STD):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.layer, self.batch_size, self.device, self.norm = layer, batch_size, torch.device(device), norm
        self.mean, self.std = tuple(mean), tuple(std)
        self.patch_size = int(model.patch_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h*p, w*p) normalised images -> (B, C, h, w) token features, in chunks of ``batch_size``."""
        outs = []
        for start in range(0, images.shape[0], self.batch_size):
            x = images[start:start + self.batch_size].to(self.device)
            outs.append(self.model.forward_intermediates(x, indices=[self.layer], output_fmt="NCHW",
                                                         norm=self.norm)[0].float())
        return torch.cat(outs)

    def frames_to_features(self, frames: np.ndarray, size: Tuple[int, int]) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB frames -> (B, C, h, w) features at network input ``size``."""
        return self(preprocess_frames(frames, size, self.mean, self.std))


def build_model(name: str, checkpoint: Optional[str] = None, overrides: Optional[dict] = None) -> torch.nn.Module:
    """A PE vision tower by config name; random weights (with a warning) when no checkpoint is given."""
    from pe_dense.models.pe import PEVisionTransformer

    overrides = dict(overrides or {})
    if checkpoint is None:
        logger.warning("no checkpoint given: %s has RANDOM weights, so its tracking is meaningless (fine for "
                       "tests and timing); pass --checkpoint PATH/TO/%s.pt for real results", name, name)
    model = PEVisionTransformer.from_config(name, checkpoint=checkpoint, **overrides)
    return model.eval()
