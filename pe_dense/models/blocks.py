"""Transformer blocks of the PE vision tower, named as in the official checkpoints.

Attention is one fused in-projection + ``scaled_dot_product_attention``. Windowed attention (ViTDet style)
partitions the patch tokens into ``window x window`` windows after the projection and RoPE. A grid that the
window does not divide is padded, in one of two ways (``window_padding``):
- ``"mask"`` (default): the padding is masked out of the keys, so no token attends to anything that is not
  in the image;
- ``"zeros"``: ViTDet and the released PE detectors: the normalised tokens are zero-padded before attention
  and real tokens attend to the padding (its q/k/v are the projection biases). Use it to reproduce them.
Prefix (cls) tokens stay global: they attend to every real token, and every window also attends to them,
so a window that covers the whole grid is exactly global attention.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from .rope import apply_rope


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x):
        return x * self.gamma


class DropPath(nn.Module):
    """Per-sample stochastic depth (torchvision's kernel)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        return stochastic_depth(x, self.p, "row", self.training) if self.p > 0 else x

    def extra_repr(self):
        return f"p={self.p}"


def _partition(t: torch.Tensor, grid: Tuple[int, int], window: int) -> torch.Tensor:
    """(B, H, h*w, d) -> (B * nwin, H, window*window, d), zero-padding the grid to a multiple of window."""
    b, nh, _, d = t.shape
    gh, gw = grid
    t = t.view(b, nh, gh, gw, d)
    ph, pw = -gh % window, -gw % window
    if ph or pw:
        t = F.pad(t, (0, 0, 0, pw, 0, ph))
    hh, ww = (gh + ph) // window, (gw + pw) // window
    t = t.view(b, nh, hh, window, ww, window, d).permute(0, 2, 4, 1, 3, 5, 6)
    return t.reshape(b * hh * ww, nh, window * window, d)


def _unpartition(t: torch.Tensor, batch: int, grid: Tuple[int, int], window: int) -> torch.Tensor:
    """Inverse of _partition: (B * nwin, H, window*window, d) -> (B, H, h*w, d)."""
    gh, gw = grid
    hh, ww = -(-gh // window), -(-gw // window)
    nh, d = t.shape[1], t.shape[-1]
    t = t.view(batch, hh, ww, nh, window, window, d).permute(0, 3, 1, 4, 2, 5, 6)
    t = t.reshape(batch, nh, hh * window, ww * window, d)[:, :, :gh, :gw]
    return t.reshape(batch, nh, gh * gw, d)


def _padding_mask(grid: Tuple[int, int], window: int, num_prefix: int, device) -> Optional[torch.Tensor]:
    """Boolean key mask (nwin, 1, 1, num_prefix + window*window), True = attend; None if no padding."""
    gh, gw = grid
    if gh % window == 0 and gw % window == 0:
        return None
    valid = torch.ones(1, 1, gh * gw, 1, device=device)
    valid = _partition(valid, grid, window)[..., 0].bool()  # (nwin, 1, w*w)
    prefix = torch.ones(valid.shape[0], 1, num_prefix, dtype=torch.bool, device=device)
    return torch.cat([prefix, valid], dim=-1)[:, :, None, :]


class PEAttention(nn.Module):
    """Multi-head self-attention with 2D RoPE on q and k; parameters named like nn.MultiheadAttention."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x, rope: torch.Tensor, grid: Tuple[int, int], window: int = 0, num_prefix: int = 0):
        """``rope`` is the ``rope.rope_pairs`` table of the (prefix + h*w) tokens."""
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], rope).unbind(0)  # q and k rotated in one pass
        v = qkv[2]
        if window <= 0:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = self._windowed(q, k, v, grid, window, num_prefix)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))

    @staticmethod
    def _windowed(q, k, v, grid, window, p):
        b = q.shape[0]
        mask = _padding_mask(grid, window, p, q.device)
        qw, kw, vw = (_partition(t[:, :, p:], grid, window) for t in (q, k, v))
        if p:
            nwin = qw.shape[0] // b
            kw = torch.cat([k[:, :, :p].repeat_interleave(nwin, 0), kw], dim=2)
            vw = torch.cat([v[:, :, :p].repeat_interleave(nwin, 0), vw], dim=2)
        if mask is not None:
            mask = mask.repeat(b, 1, 1, 1)
        out = _unpartition(F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask), b, grid, window)
        if p:  # prefix tokens attend globally
            out = torch.cat([F.scaled_dot_product_attention(q[:, :, :p], k, v), out], dim=2)
        return out


def _pad_grid(x: torch.Tensor, grid: Tuple[int, int], padded: Tuple[int, int], p: int) -> torch.Tensor:
    """Zero-pad the patch tokens of (B, p + h*w, C) to a (ph, pw) grid, bottom/right."""
    b, _, c = x.shape
    patches = x[:, p:].view(b, grid[0], grid[1], c)
    patches = F.pad(patches, (0, 0, 0, padded[1] - grid[1], 0, padded[0] - grid[0]))
    return torch.cat([x[:, :p], patches.reshape(b, -1, c)], dim=1)


def _crop_grid(x: torch.Tensor, padded: Tuple[int, int], grid: Tuple[int, int], p: int) -> torch.Tensor:
    b, _, c = x.shape
    patches = x[:, p:].view(b, padded[0], padded[1], c)[:, : grid[0], : grid[1]]
    return torch.cat([x[:, :p], patches.reshape(b, -1, c)], dim=1)


class PEBlock(nn.Module):
    """Pre-norm residual block: x + ls_1(attn(ln_1(x))), then x + ls_2(mlp(ln_2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_width: int, ls_init: Optional[float] = None,
                 drop_path: float = 0.0, window: int = 0, window_padding: str = "mask", norm_eps: float = 1e-5):
        super().__init__()
        if window_padding not in ("mask", "zeros"):
            raise ValueError(f"window_padding={window_padding!r}; choose 'mask' or 'zeros'")
        self.window = window
        self.window_padding = window_padding
        self.ln_1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = PEAttention(dim, num_heads)
        self.ln_2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(dim, mlp_width)),
            ("gelu", nn.GELU()),
            ("c_proj", nn.Linear(mlp_width, dim)),
        ]))
        self.ls_1 = LayerScale(dim, ls_init) if ls_init is not None else nn.Identity()
        self.ls_2 = LayerScale(dim, ls_init) if ls_init is not None else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def attention_grid(self, grid: Tuple[int, int]) -> Tuple[int, int]:
        """The grid attention runs on: zero-padded to a window multiple in ``"zeros"`` mode, else ``grid``."""
        if self.window <= 0 or self.window_padding != "zeros":
            return tuple(grid)
        return (-(-grid[0] // self.window) * self.window, -(-grid[1] // self.window) * self.window)

    def forward(self, x, rope: torch.Tensor, grid: Tuple[int, int], num_prefix: int):
        """``rope`` is the ``rope.rope_pairs`` table of ``attention_grid(grid)``."""
        y = self.ln_1(x)
        padded = self.attention_grid(grid)
        if padded != tuple(grid):
            y = _crop_grid(self.attn(_pad_grid(y, grid, padded, num_prefix), rope, padded, self.window,
                                     num_prefix), padded, grid, num_prefix)
        else:
            y = self.attn(y, rope, grid, self.window, num_prefix)
        x = x + self.drop_path(self.ls_1(y))
        return x + self.drop_path(self.ls_2(self.mlp(self.ln_2(x))))


class AttentionPool(nn.Module):
    """Core models' attention pooling: learned probe attends to the tokens, then a residual MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, num_probe: int = 1):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, num_probe, dim) * dim ** -0.5)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.layernorm = nn.LayerNorm(dim, eps=1e-5)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(dim, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, dim)),
        ]))

    def forward(self, x):
        x = self.attn(self.probe.expand(x.shape[0], -1, -1), x, x, need_weights=False)[0]
        return x + self.mlp(self.layernorm(x))
