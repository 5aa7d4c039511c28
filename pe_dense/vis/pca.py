"""Feature PCA as in the PE paper's figures: the first three principal components of the patch tokens as RGB."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F


def feature_pca_rgb(feats: torch.Tensor, basis: Optional[torch.Tensor] = None) -> np.ndarray:
    """(C, h, w) features -> (h, w, 3) float image in [0, 1].

    Components are fit on the tokens of this map (or given as ``basis``, (C, 3), to share colours across
    images/frames), each projected channel is min-max scaled with 1-99 percentile clipping so a few outlier
    tokens do not wash the picture out.
    """
    c, h, w = feats.shape
    tokens = feats.reshape(c, h * w).t().float()
    tokens = tokens - tokens.mean(0, keepdim=True)
    if basis is None:
        _, _, v = torch.linalg.svd(tokens, full_matrices=False)
        basis = v[:3].t()
    proj = tokens @ basis
    lo, hi = torch.quantile(proj, 0.01, dim=0), torch.quantile(proj, 0.99, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    return rgb.reshape(h, w, 3).numpy()


def save_pca_figure(image: np.ndarray, feats: torch.Tensor, path: str, title: str = "") -> None:
    """Write ``[image | feature PCA]`` side by side (PCA upsampled to the image size, nearest) to ``path``."""
    import cv2

    h, w = image.shape[:2]
    pca = torch.from_numpy(feature_pca_rgb(feats)).permute(2, 0, 1)[None]
    pca = F.interpolate(pca, size=(h, w), mode="nearest")[0].permute(1, 2, 0).numpy()
    canvas = np.concatenate([image.astype(np.float32) / 255.0, pca], axis=1)
    canvas = (canvas * 255).round().astype(np.uint8)
    if title:
        cv2.putText(canvas, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    if not cv2.imwrite(path, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}: check that the directory exists and is writable")
