"""Transformer blocks of the PE vision tower, named as in the official checkpoints.

Attention is one fused in-projection + ``scaled_dot_product_attention``. Windowed attention (ViTDet style)
partitions the patch tokens into ``window x window`` windows after the projection and RoPE, pads the grid
when it does not divide, and masks the padding out of the keys (ViTDet attends to zero padding; we do not).
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

    def forward(self, x, rope: Tuple[torch.Tensor, torch.Tensor], grid: Tuple[int, int], window: int = 0,
                num_prefix: int = 0):
        """``rope`` is ``(cos, signed_sin)`` for the (prefix + h*w) tokens; see ``rope.apply_rope``."""
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], *rope).unbind(0)  # q and k rotated in one pass
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


class PEBlock(nn.Module):
    """Pre-norm residual block: x + ls_1(attn(ln_1(x))), then x + ls_2(mlp(ln_2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_width: int, ls_init: Optional[float] = None,
                 drop_path: float = 0.0, window: int = 0):
        super().__init__()
        self.window = window
        self.ln_1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = PEAttention(dim, num_heads)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(dim, mlp_width)),
            ("gelu", nn.GELU()),
            ("c_proj", nn.Linear(mlp_width, dim)),
        ]))
        self.ls_1 = LayerScale(dim, ls_init) if ls_init is not None else nn.Identity()
        self.ls_2 = LayerScale(dim, ls_init) if ls_init is not None else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x, cos, sin, grid: Tuple[int, int], num_prefix: int):
        x = x + self.drop_path(self.ls_1(self.attn(self.ln_1(x), (cos, sin), grid, self.window, num_prefix)))
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
