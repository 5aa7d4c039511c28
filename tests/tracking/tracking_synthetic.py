"""Synthetic label videos and oracle features shared by the tracking tests (a uniquely named module so the
tests can import it; conftest.py only holds fixtures)."""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def token_boxes_video(num_frames: int, grid: Tuple[int, int], patch: int,
                      boxes: Dict[int, Sequence[Tuple[int, int, int, int]]]) -> List[np.ndarray]:
    """Label maps (H, W) = grid * patch of objects that are whole token blocks.

    ``boxes[label][t] = (row, col, height, width)`` in tokens, or None when the object is absent in frame t.
    Later labels paint over earlier ones.
    """
    h, w = grid
    masks = []
    for t in range(num_frames):
        m = np.zeros((h * patch, w * patch), dtype=np.int64)
        for label, traj in boxes.items():
            box = traj[t]
            if box is None:
                continue
            r, c, bh, bw = box
            r0, c0 = max(r, 0), max(c, 0)
            r1, c1 = min(r + bh, h), min(c + bw, w)
            if r1 > r0 and c1 > c0:
                m[r0 * patch:r1 * patch, c0 * patch:c1 * patch] = label
        masks.append(m)
    return masks


def oracle_features(masks: Sequence[np.ndarray], patch: int, num_labels: int) -> torch.Tensor:
    """(T, L, h, w) features = one-hot of each token's label (read at the token's centre pixel).

    Tokens of one object are identical and orthogonal to every other object's: the best possible features.
    """
    feats = []
    for m in masks:
        centre = torch.from_numpy(m[patch // 2::patch, patch // 2::patch])
        feats.append(F.one_hot(centre, num_labels).permute(2, 0, 1).float())
    return torch.stack(feats)


def token_labels(mask: np.ndarray, patch: int) -> np.ndarray:
    return mask[patch // 2::patch, patch // 2::patch]
