"""Block masking of the student's input (PE alignment: 75% of tokens in 2x2-token blocks).

The paper does not say how masked tokens are hidden (PE_FACTS section 5, open choice). Default ``zero_pixels``:
the masked patches of the *normalised* image are set to 0 (mid grey), which needs no new parameter, so LayerScale
stays the only new one as published. ``noise`` fills them with unit Gaussian noise instead. Masks come from a
generator seeded per (seed, sample key), so a resumed run or another rank redraws exactly the same masks.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

MASK_METHODS = ("zero_pixels", "noise", "none")


def _generator(seed: int, key: int) -> torch.Generator:
    # Mixing with a large odd constant keeps (seed, key) pairs apart; the result fits a 63-bit seed.
    return torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + key) % (2 ** 63))


def block_mask(grid: Tuple[int, int], ratio: float = 0.75, block: Tuple[int, int] = (2, 2), seed: int = 0,
               key: int = 0) -> torch.Tensor:
    """Boolean (h, w) token mask, True = masked: round(ratio * blocks) whole blocks chosen uniformly.

    On a grid the block divides, exactly ``ratio`` of the tokens are masked (up to rounding of the block count);
    otherwise the blocks on the border are cropped."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    bh, bw = block
    nh, nw = math.ceil(grid[0] / bh), math.ceil(grid[1] / bw)
    n_masked = round(ratio * nh * nw)
    order = torch.randperm(nh * nw, generator=_generator(seed, key))
    blocks = torch.zeros(nh * nw, dtype=torch.bool)
    blocks[order[:n_masked]] = True
    tokens = blocks.view(nh, nw).repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    return tokens[: grid[0], : grid[1]]


def batch_block_masks(grid: Tuple[int, int], keys: Sequence[int], ratio: float = 0.75,
                      block: Tuple[int, int] = (2, 2), seed: int = 0) -> torch.Tensor:
    """(B, h, w) masks, one per sample key (e.g. the global sample index): independent of batch composition."""
    return torch.stack([block_mask(grid, ratio, block, seed, int(k)) for k in keys])


def apply_token_mask(images: torch.Tensor, masks: torch.Tensor, patch_size: int, method: str = "zero_pixels",
                     noise_seed: int = 0) -> torch.Tensor:
    """Hide the masked tokens' patches of normalised images (B, 3, H, W) given (B, h, w) token masks."""
    if method not in MASK_METHODS:
        raise ValueError(f"mask method {method!r} is unknown; use one of {MASK_METHODS}")
    if method == "none":
        return images
    b, _, h, w = images.shape
    if (masks.shape[-2] * patch_size, masks.shape[-1] * patch_size) != (h, w):
        raise ValueError(f"token mask {tuple(masks.shape[-2:])} x patch {patch_size} does not cover images of "
                         f"{h}x{w}; build the mask on the student's token grid (H // patch, W // patch)")
    pix = F.interpolate(masks[:, None].float(), scale_factor=patch_size, mode="nearest").to(images.device).bool()
    if method == "zero_pixels":
        return images.masked_fill(pix, 0.0)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(noise_seed)).to(images)
    return torch.where(pix, noise, images)
