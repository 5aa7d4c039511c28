"""PE vision tower (Perception Encoder, arXiv 2504.13181), exact to the official release in float32.

Parameter names follow the official checkpoints, so ``PE-Spatial-*.pt`` files load with ``strict=True`` and no
renaming. Beyond the official model: any input size, three RoPE position schemes and three position-embedding
resizes (official by default), ViTDet window attention with global blocks, working activation checkpointing,
linear drop path, ``forward_intermediates``/``feature_info`` (timm style) and ``get_layer_id`` for lr decay.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from .blocks import AttentionPool, PEBlock
from .checkpoint import load_pe_checkpoint
from .configs import PEConfig, get_config
from .rope import ROPE_MODES, rope_pairs, rope_table

POS_RESIZE_MODES = ("bilinear", "bicubic", "tile")


class _Transformer(nn.Module):
    """Holds ``resblocks`` so parameter names read ``transformer.resblocks.{i}.*`` as in the release."""

    def __init__(self, blocks: List[PEBlock]):
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)


class PEVisionTransformer(nn.Module):
    """PE vision tower.

    Args:
        cfg: architecture (see ``configs.PE_CONFIGS``).
        rope_mode: ``"official"`` (default; integer positions, extrapolated), ``"timm"`` (rescaled to the
            pretraining grid) or ``"window"`` (released PE detectors: window-local in windowed blocks).
        rope_ref_size: reference grid of the ``"timm"``/``"window"`` schemes; defaults to the checkpoint's
            pretraining grid ``cfg.pretrain_grid`` (32 for every Spatial model, also after a patch-size override:
            the released Mask R-CNN's ``pt_hw_seq_len=32``). The released DETA used 16.
        pos_embed_resize: ``"bilinear"`` (official), ``"bicubic"`` (timm, antialiased) or ``"tile"`` (detection
            "abswin": the stored grid repeated across the token grid).
        pos_grid: side of the stored position grid; defaults to ``cfg.pretrain_grid``. The released
            detectors use 32 (Mask R-CNN) or 24 (DETA) with ``pos_embed_resize="tile"``.
        window_size: window side in tokens for windowed blocks; 0 = all blocks global.
        global_blocks: indices of blocks that stay global when ``window_size > 0``.
        window_padding: ``"mask"`` (default; padding excluded from attention) or ``"zeros"`` (ViTDet and the
            released detectors attend to zero padding), for grids the window does not divide.
        norm_eps: epsilon of the blocks' LayerNorms (official 1e-5, and also what the released detectors ran:
            their configs pass ``eps=1e-6``, which their blocks never use). An option for other ViTDet ports.
        drop_path_rate: stochastic depth at the last block, linear from 0 at the first.
        grad_checkpointing: recompute blocks in the backward pass to save memory.
        pad_to_patch: zero-pad inputs whose size is not a multiple of the patch instead of raising.
    """

    def __init__(self, cfg: PEConfig, *, rope_mode: str = "official", pos_embed_resize: str = "bilinear",
                 pos_grid: Optional[int] = None, window_size: int = 0, global_blocks: Sequence[int] = (),
                 window_padding: str = "mask", rope_ref_size: Optional[int] = None, norm_eps: float = 1e-5,
                 drop_path_rate: float = 0.0, grad_checkpointing: bool = False, pad_to_patch: bool = False):
        super().__init__()
        if rope_mode not in ROPE_MODES:
            raise ValueError(f"rope_mode={rope_mode!r}; choose one of {ROPE_MODES}")
        if pos_embed_resize not in POS_RESIZE_MODES:
            raise ValueError(f"pos_embed_resize={pos_embed_resize!r}; choose one of {POS_RESIZE_MODES}")
        n = cfg.layers
        global_blocks = sorted(i % n for i in global_blocks)
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0, got {window_size}")
        self.cfg = cfg
        self.rope_mode = rope_mode
        self.rope_ref_size = rope_ref_size or cfg.pretrain_grid
        self.pos_embed_resize = pos_embed_resize
        self.pos_grid = pos_grid or cfg.pretrain_grid
        self.window_size = window_size
        self.global_blocks = tuple(global_blocks)
        self.grad_checkpointing = grad_checkpointing
        self.pad_to_patch = pad_to_patch
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.embed_dim = width = cfg.width
        self.patch_size = cfg.patch_size

        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        scale = width ** -0.5
        if cfg.use_cls_token:
            self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn(self.num_prefix_tokens + self.pos_grid ** 2, width))
        self.ln_pre = nn.LayerNorm(width, eps=1e-5)
        rates = torch.linspace(0, drop_path_rate, n).tolist() if n > 1 else [drop_path_rate]
        windows = [0 if (window_size <= 0 or i in global_blocks) else window_size for i in range(n)]
        self.transformer = _Transformer([
            PEBlock(width, cfg.heads, cfg.mlp_width, cfg.ls_init, rates[i], windows[i], window_padding, norm_eps)
            for i in range(n)])
        if cfg.use_ln_post:
            self.ln_post = nn.LayerNorm(width, eps=1e-5)
        if cfg.pool_type == "attn":
            self.attn_pool = AttentionPool(width, cfg.attn_pool_heads)
        if cfg.output_dim is not None:
            self.proj = nn.Parameter(scale * torch.randn(width, cfg.output_dim))
        self.feature_info = [dict(num_chs=width, reduction=cfg.patch_size, module=f"transformer.resblocks.{i}")
                             for i in range(n)]
        self._rope_cache: Dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, name: Union[str, PEConfig], checkpoint: Optional[str] = None, strict: bool = True,
                    **overrides) -> "PEVisionTransformer":
        """Build a named config; ``overrides`` may set config fields (``layers=3``) or constructor options."""
        cfg = get_config(name) if isinstance(name, str) else name
        fields = {f.name for f in dataclasses.fields(PEConfig)}
        cfg = cfg.replace(**{k: v for k, v in overrides.items() if k in fields})
        model = cls(cfg, **{k: v for k, v in overrides.items() if k not in fields})
        if checkpoint is not None:
            load_pe_checkpoint(model, checkpoint, strict=strict)
        return model

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.resblocks

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    # ------------------------------------------------------------------ lr decay
    def get_num_layers(self) -> int:
        """Layer ids run 0 (embeddings) .. layers (blocks) .. layers + 1 (post-norm, pool, projection)."""
        return self.cfg.layers + 2

    def get_layer_id(self, param_name: str) -> int:
        if param_name.startswith("transformer.resblocks."):
            return int(param_name.split(".")[2]) + 1
        if param_name.split(".")[0] in ("conv1", "class_embedding", "positional_embedding", "ln_pre"):
            return 0
        return self.cfg.layers + 1

    # ------------------------------------------------------------------ embedding
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}; convert grayscale "
                             "or RGBA images to RGB first")
        p = self.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            if not self.pad_to_patch:
                raise ValueError(f"input {h}x{w} is not a multiple of the patch size {p}: resize to "
                                 f"{h // p * p}x{w // p * p} or {-(-h // p) * p}x{-(-w // p) * p}, or "
                                 "build the model with pad_to_patch=True")
            x = F.pad(x, (0, -w % p, 0, -h % p))
        return x

    def resized_pos_embed(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Position embedding for a (h, w) token grid, (prefix + h*w, W); the prefix entry is kept apart."""
        pe = self.positional_embedding
        prefix, patch = pe[: self.num_prefix_tokens], pe[self.num_prefix_tokens:]
        g = self.pos_grid
        if tuple(grid) != (g, g):
            patch = patch.reshape(1, g, g, -1).permute(0, 3, 1, 2)
            if self.pos_embed_resize == "tile":
                reps = (-(-grid[0] // g), -(-grid[1] // g))
                patch = patch.tile(1, 1, *reps)[:, :, : grid[0], : grid[1]]
            else:
                antialias = self.pos_embed_resize == "bicubic"
                patch = F.interpolate(patch.float(), size=grid, mode=self.pos_embed_resize,
                                      align_corners=False, antialias=antialias).to(pe.dtype)
            patch = patch.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
        return torch.cat([prefix, patch], dim=0)

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Images -> tokens after ln_pre, and the token grid (h, w)."""
        x = self.conv1(self._check_input(x))
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        if self.num_prefix_tokens:
            x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = x + self.resized_pos_embed(grid).to(x.dtype)
        return self.ln_pre(x), grid

    def _rope(self, grid: Tuple[int, int], window: int, device) -> torch.Tensor:
        """The ``rope_pairs`` table of a token grid, cached per (grid, window, device) in eager mode."""
        window = window if self.rope_mode == "window" else 0
        if torch.compiler.is_compiling():  # traced: the table is a graph constant; a cache would only add guards
            return self._make_rope(grid, window, device)
        key = (tuple(grid), window, str(device))
        if key not in self._rope_cache:
            self._rope_cache[key] = self._make_rope(grid, window, device)
        return self._rope_cache[key]

    def _make_rope(self, grid: Tuple[int, int], window: int, device) -> torch.Tensor:
        cos, sin = rope_table(grid, self.cfg.width // self.cfg.heads, mode=self.rope_mode, ref_size=self.rope_ref_size,
                              num_prefix=self.num_prefix_tokens, window=window, device=device)
        return rope_pairs(cos, sin)

    # ------------------------------------------------------------------ trunk
    def _run_blocks(self, x: torch.Tensor, grid: Tuple[int, int], last: int, keep: Sequence[int] = ()):
        """Run blocks 0..last; return the final tokens and the tokens after each block in ``keep``."""
        kept = []
        for i, blk in enumerate(self.blocks[: last + 1]):
            rope = self._rope(blk.attention_grid(grid), blk.window, x.device)
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = activation_checkpoint(blk, x, rope, grid, self.num_prefix_tokens, use_reentrant=False)
            else:
                x = blk(x, rope, grid, self.num_prefix_tokens)
            if i in keep:
                kept.append(x)
        return x, kept

    def _layer_index(self, layer_idx: int) -> int:
        n = self.cfg.layers
        if not -n <= layer_idx < n:
            raise IndexError(f"layer_idx {layer_idx} out of range for a {n}-block model")
        return layer_idx % n

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_post(x) if self.cfg.use_ln_post else x

    def forward_features(self, x: torch.Tensor, layer_idx: int = -1, norm: bool = False,
                         strip_cls_token: bool = False) -> torch.Tensor:
        """Tokens (B, N, W) after block ``layer_idx`` (0-based, negatives Python-style); official semantics."""
        tokens, grid = self.embed(x)
        tokens, _ = self._run_blocks(tokens, grid, self._layer_index(layer_idx))
        if norm:
            tokens = self._norm(tokens)
        return tokens[:, self.num_prefix_tokens:] if strip_cls_token else tokens

    def forward_intermediates(self, x: torch.Tensor, indices: Union[int, Sequence[int], None] = None,
                              output_fmt: str = "NCHW", norm: bool = False, return_prefix_tokens: bool = False,
                              intermediates_only: bool = True, stop_early: bool = True):
        """Features after the chosen blocks (timm semantics: an int n means the last n blocks).

        Returns a list of (B, W, h, w) maps (``"NCHW"``) or (B, h*w, W) tokens (``"NLC"``); with
        ``return_prefix_tokens`` each entry is ``(features, prefix_tokens)``; with ``intermediates_only=False``
        the result is ``(final_tokens, intermediates)``.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        n = self.cfg.layers
        if indices is None:
            indices = [n - 1]
        elif isinstance(indices, int):
            indices = list(range(n - indices, n))
        order = [self._layer_index(i) for i in indices]
        last = max(order) if stop_early and intermediates_only else n - 1
        tokens, grid = self.embed(x)
        final, kept = self._run_blocks(tokens, grid, last, keep=sorted(set(order)))
        by_layer = dict(zip(sorted(set(order)), kept))
        outs = []
        for i in order:
            t = self._norm(by_layer[i]) if norm else by_layer[i]
            prefix, patches = t[:, : self.num_prefix_tokens], t[:, self.num_prefix_tokens:]
            if output_fmt == "NCHW":
                patches = patches.transpose(1, 2).reshape(t.shape[0], -1, *grid)
            outs.append((patches, prefix) if return_prefix_tokens else patches)
        return outs if intermediates_only else (self._norm(final), outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Official ``forward``: normed tokens; Core models pool and project to an embedding."""
        x = self.forward_features(x, norm=True)
        if self.cfg.pool_type == "attn":
            x = self.attn_pool(x).squeeze(1)
        if self.cfg.output_dim is not None:
            x = x @ self.proj
        return x
