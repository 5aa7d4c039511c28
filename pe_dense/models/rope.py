"""2D rotary position embedding of PE, with the three position schemes found in the wild.

Angles for a token at grid position (y, x) are ``[x * f (interleaved) | y * f (interleaved)]`` over the whole
head dim, with ``f_k = theta ** (-2k / (head_dim / 2))``. Prefix (cls) tokens get angle 0. Tables are built in
float32; each pair (a, b) becomes (a cos - b sin, b cos + a sin). With the pair sign folded into the sine table
(``signed_sin``) that is ``x * cos + swap_pairs(x) * signed_sin``: three elementwise passes, no Python loops.

Position schemes (``rope_mode``):
- ``"official"``: integer positions ``0..g-1`` (``1..g`` with a cls token), extrapolated at other sizes.
- ``"timm"``: positions rescaled to the pretraining grid, ``(arange(s) + offset) / s * ref``.
- ``"window"``: the released PE detection code (detectron2 Mask R-CNN and DETA backbones):
  ``arange(n) / n * ref + 1`` with n = the window side in windowed blocks (positions local to each window) and
  the token-grid side in global blocks; ``+ 1`` with or without a cls token. The releases used ``ref = 32``
  (Mask R-CNN, window 32: spacing 1) and ``ref = 16`` (DETA, window 24), set through the model's
  ``rope_ref_size``.
"""
from __future__ import annotations

from typing import Tuple

import torch

ROPE_MODES = ("official", "timm", "window")


def rope_frequencies(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """The ``head_dim // 4`` frequencies of one axis."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
    half = head_dim // 2
    return theta ** (-torch.arange(0, half, 2, dtype=torch.float64) / half)


def axis_positions(size: int, *, mode: str, ref_size: int, offset: float, window: int = 0) -> torch.Tensor:
    """Positions along one axis of ``size`` tokens (float64)."""
    idx = torch.arange(size, dtype=torch.float64)
    if mode == "official":
        return idx + offset
    if mode == "timm":
        return (idx + offset) / size * ref_size
    if mode == "window":
        n = window if window > 0 else size
        return torch.remainder(idx, n) / n * ref_size + 1.0
    raise ValueError(f"unknown rope_mode {mode!r}; choose one of {ROPE_MODES}")


def rope_table(grid_hw: Tuple[int, int], head_dim: int, *, mode: str, ref_size: int, num_prefix: int,
               window: int = 0, theta: float = 10000.0, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (num_prefix + h*w, head_dim), float32, tokens in row-major order."""
    gh, gw = grid_hw
    offset = 1.0 if num_prefix else 0.0
    freqs = rope_frequencies(head_dim, theta)
    ay = axis_positions(gh, mode=mode, ref_size=ref_size, offset=offset, window=window)[:, None] * freqs
    ax = axis_positions(gw, mode=mode, ref_size=ref_size, offset=offset, window=window)[:, None] * freqs
    ay = ay.repeat_interleave(2, dim=-1)[:, None, :].expand(gh, gw, -1)
    ax = ax.repeat_interleave(2, dim=-1)[None, :, :].expand(gh, gw, -1)
    angles = torch.cat([ax, ay], dim=-1).reshape(gh * gw, head_dim)
    angles = torch.cat([angles.new_zeros(num_prefix, head_dim), angles], dim=0).float()
    return angles.cos().to(device), angles.sin().to(device)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """Fold the rotation's sign into the sine table: (-sin, +sin) on each interleaved pair."""
    sign = torch.tensor([-1.0, 1.0], dtype=sin.dtype, device=sin.device).repeat(sin.shape[-1] // 2)
    return sin * sign


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last dim of ``x`` (…, N, head_dim) in float32; return x's dtype.

    ``sin_signed`` is :func:`signed_sin` of the sine table.
    """
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return torch.addcmul(x * cos, swapped, sin_signed).to(x.dtype)  # float32 tables promote the math
