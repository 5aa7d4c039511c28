"""Resizing rules of the DAVIS label-propagation protocol.

Two rules matter for reproducing the reference predictions pixel for pixel:

* nearest-neighbour label resizing picks exactly the source pixel PIL's ``Image.resize(..., NEAREST)`` picks
  (used to shrink the first mask to the token grid and to bring predictions back to the frame size);
* frames are stretched so the short side is 480 and the long side is rounded *down* to a multiple of 64.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]


def pil_nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Source index of every output position under PIL's NEAREST resize (one axis).

    Pillow maps output pixel ``i`` to ``int(scale/2 + i*scale)`` with ``scale = in/out`` in double precision,
    where the position is *accumulated* (``x += scale`` per step) rather than multiplied. Accumulation can round
    differently from ``(i + 0.5) * scale`` exactly at integer boundaries, so we accumulate the same way
    (``np.cumsum`` adds sequentially in float64, like Pillow's C loop).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got in_size={in_size}, out_size={out_size}")
    scale = float(in_size) / float(out_size)
    steps = np.full(out_size, scale, dtype=np.float64)
    steps[0] = scale * 0.5
    positions = np.cumsum(steps)
    return np.minimum(positions.astype(np.int64), in_size - 1)


def nearest_resize(labels: ArrayLike, size: Tuple[int, int]) -> ArrayLike:
    """Resize an (H, W) label map to ``size=(h, w)`` choosing pixels exactly as PIL NEAREST does."""
    in_h, in_w = labels.shape[-2:]
    out_h, out_w = size
    if (in_h, in_w) == (out_h, out_w):
        return labels
    rows = pil_nearest_index(in_h, out_h)
    cols = pil_nearest_index(in_w, out_w)
    if isinstance(labels, torch.Tensor):
        rows_t = torch.from_numpy(rows).to(labels.device)
        cols_t = torch.from_numpy(cols).to(labels.device)
        return labels[..., rows_t, :][..., cols_t]
    return labels[..., rows, :][..., cols]


def protocol_frame_size(height: int, width: int, short_side: Optional[int] = 480, long_side_multiple: int = 64,
                        patch_size: int = 1) -> Tuple[int, int]:
    """Network input size (h, w) for a frame of ``height x width``, following the reference protocol.

    The short side becomes ``short_side`` and the long side ``floor(short_side * long / short / multiple) *
    multiple``: the frame is stretched, not cropped (DAVIS 480x854 -> 480x832). ``short_side=None`` keeps the
    frame size. Sides that are then not a multiple of ``patch_size`` (e.g. 480 with patch 14) are rounded down
    to one; the reference never needed this (patches 8 and 16 divide 480 and 64), so it is our choice, logged.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if short_side is None:
        out_h, out_w = height, width
    elif height > width:  # portrait: width is the short side
        out_w = short_side
        out_h = int(((short_side * height) / width) // long_side_multiple * long_side_multiple)
    else:  # landscape or square: height is the short side (the reference's branch order)
        out_h = short_side
        out_w = int(((short_side * width) / height) // long_side_multiple * long_side_multiple)
    if out_h % patch_size or out_w % patch_size:
        floored = (out_h // patch_size * patch_size, out_w // patch_size * patch_size)
        logger.info("input %dx%d is not a multiple of the patch size %d: using %dx%d", out_h, out_w, patch_size,
                    *floored)
        out_h, out_w = floored
    if out_h < patch_size or out_w < patch_size:
        raise ValueError(f"frame {height}x{width} gives a network input of {out_h}x{out_w}, smaller than one "
                         f"{patch_size}-pixel patch: raise data.short_side or lower data.long_side_multiple")
    return out_h, out_w
