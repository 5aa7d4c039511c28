"""2D rotary position embedding of PE, with the three position schemes found in the wild.

Angles for a token at grid position (y, x) are ``[x * f (interleaved) | y * f (interleaved)]`` over the whole
head dim, with ``f_k = theta ** (-2k / (head_dim / 2))``. Prefix (cls) tokens get angle 0. Tables are built in
float32; each pair (a, b) becomes (a cos - b sin, b cos + a sin), computed in float32 whatever the activation
dtype (as the official code does), without Python loops.

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


def rope_pairs(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The interleaved tables as one (N, head_dim/2, 2) float32 table of (cos, sin) per rotated pair.

    Its last dim doubles as a complex number, so eager code rotates with one complex multiply.
    """
    return torch.stack([cos[..., ::2], sin[..., ::2]], dim=-1).float().contiguous()


def rotate_pairs_complex(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Eager path: pair (a, b) times cos + i sin as one complex multiply; a single pass over x."""
    xf = x.float().unflatten(-1, (-1, 2))
    if xf.storage_offset() % 2 or any(st % 2 for st in xf.stride()[:-1]):  # not viewable as complex numbers
        xf = xf.contiguous()
    rotated = torch.view_as_complex(xf) * torch.view_as_complex(pairs)
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)


def rotate_pairs_real(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Traced path, the same arithmetic in real numbers: compilers fuse it and ONNX can express it."""
    a, b = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = pairs.unbind(-1)
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2).to(x.dtype)


def apply_rope(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (a, b) of the last dim of ``x`` (…, N, head_dim) to (a cos - b sin, b cos + a sin).

    The math runs in float32 as in the official code, whatever x's dtype; the result has x's dtype. ``pairs`` is
    :func:`rope_pairs` of the (N, head_dim) tables. Eager mode multiplies complex numbers (one fused kernel, four to
    six times faster than the real formula on CPU); under ``torch.compile``/``torch.export``/ONNX export the real
    formula is traced instead, since compilers fuse it anyway and exporters lack complex types.
    """
    if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return rotate_pairs_real(x, pairs)
    return rotate_pairs_complex(x, pairs)
