"""Bake a PE tower's position embedding and RoPE tables for one input size.

Traced as written, the tables are computed in the graph (arange, Resize, Sin/Cos) from the input shape, which
either specialises silently to the export size or makes a "dynamic H, W" graph that is wrong at any other size
(EVA #117). Baked as constants, the graph can only claim the size it was built for, and asking for another
size fails with a message instead of numbers.
"""
from __future__ import annotations

import copy
from typing import Tuple

import torch

from pe_dense.models.pe import PEVisionTransformer


class SizeNotServedError(ValueError):
    """A size the exported graph was not built for."""


def check_export_size(size: Tuple[int, int], patch: int) -> Tuple[int, int]:
    """Token grid for an (H, W) input; refuses sizes that are not patch multiples, naming the nearest ones."""
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0 or h % patch or w % patch:
        down = (max(h // patch, 1) * patch, max(w // patch, 1) * patch)
        up = (-(-h // patch) * patch, -(-w // patch) * patch)
        raise SizeNotServedError(
            f"export size {h}x{w} is not a multiple of the patch size {patch}: the graph would have to pad or "
            f"crop. Export at {down[0]}x{down[1]} or {up[0]}x{up[1]} and resize images to that size")
    return h // patch, w // patch


class BakedSizePE(PEVisionTransformer):
    """A PE tower whose position embedding and RoPE tables are constants (buffers) for one token grid.

    Made by :func:`bake_for_size` from a built model (a copy; the original is untouched). Its forward is the
    parent's, except that the tables come from the buffers and any other grid is refused.
    """

    baked_grid: Tuple[int, int]

    def resized_pos_embed(self, grid):
        self._check_grid(grid)
        return self.baked_pos_embed

    def _rope(self, grid, window, device):
        window = window if self.rope_mode == "window" else 0
        return getattr(self, _rope_buffer_name(grid, window))

    def _check_grid(self, grid):
        if tuple(grid) != self.baked_grid:
            p = self.patch_size
            raise SizeNotServedError(
                f"this graph was baked for a {self.baked_grid[0] * p}x{self.baked_grid[1] * p} input "
                f"({self.baked_grid[0]}x{self.baked_grid[1]} tokens), got a {grid[0]}x{grid[1]} token grid: "
                "resize the image to the export size or export again at the size you need")


def _rope_buffer_name(grid, window) -> str:
    return f"baked_rope_{grid[0]}x{grid[1]}_w{window}"


def bake_for_size(model: PEVisionTransformer, size: Tuple[int, int], copy_model: bool = True) -> BakedSizePE:
    """``model`` with its tables baked for (H, W) inputs (refused unless H, W are patch multiples): a copy, or
    ``model`` itself turned into a :class:`BakedSizePE` with ``copy_model=False`` (G's weights are 7 GB)."""
    grid = check_export_size(size, model.patch_size)
    with torch.no_grad():  # tables computed by the model's own code before it becomes a BakedSizePE
        pos = model.resized_pos_embed(grid).detach().clone()
        ropes = {}
        for blk in model.blocks:
            agrid = blk.attention_grid(grid)
            window = blk.window if model.rope_mode == "window" else 0
            ropes[_rope_buffer_name(agrid, window)] = model._make_rope(agrid, window, model.conv1.weight.device)
    baked = copy.deepcopy(model) if copy_model else model
    baked.__class__ = BakedSizePE  # adds no state of its own in __init__, only the buffers registered here
    baked.baked_grid = tuple(grid)
    baked.register_buffer("baked_pos_embed", pos)
    for name, table in ropes.items():
        baked.register_buffer(name, table)
    baked._rope_cache = {}
    return baked
