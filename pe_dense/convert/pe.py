"""PE tower conversions: official <-> timm layout, and patch-kernel resizing (14 -> 16 as the detectors did)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..models.checkpoint import StateDict, official_to_timm, unwrap_state_dict


def resize_patch_kernel(weight: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Resize a (W, 3, p, p) patch-embedding kernel bicubically, as the released PE detectors did (14 -> 16).

    Plain bicubic resampling of the kernel (align_corners=False), not timm's pseudo-inverse (FlexiViT) resize:
    this reproduces the released detector checkpoints, not the pretrained tower's outputs at the new patch.
    """
    if weight.shape[-1] == patch_size and weight.shape[-2] == patch_size:
        return weight
    out = F.interpolate(weight.float(), size=(patch_size, patch_size), mode="bicubic", align_corners=False)
    return out.to(weight.dtype)


def resize_pos_grid(pos: torch.Tensor, grid: int, num_prefix: int, mode: str = "bicubic") -> torch.Tensor:
    """Resample the (prefix + g*g, W) position embedding to a ``grid x grid`` table (stored, not on the fly)."""
    prefix, patch = pos[:num_prefix], pos[num_prefix:]
    g = int(round(patch.shape[0] ** 0.5))
    if g == grid:
        return pos
    patch = patch.reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=(grid, grid), mode=mode, align_corners=False, antialias=(mode != "nearest"))
    return torch.cat([prefix, patch.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos.dtype)])


def convert_pe_checkpoint(obj, to: str = "official", patch_size: Optional[int] = None,
                          pos_grid: Optional[int] = None) -> StateDict:
    """Any accepted PE checkpoint object -> a flat state dict in ``to`` layout ("official" or "timm")."""
    if to not in ("official", "timm"):
        raise ValueError(f"to={to!r}; choose 'official' or 'timm'")
    sd = dict(unwrap_state_dict(obj))
    if patch_size is not None:
        sd["conv1.weight"] = resize_patch_kernel(sd["conv1.weight"], patch_size)
    if pos_grid is not None:
        sd["positional_embedding"] = resize_pos_grid(sd["positional_embedding"], pos_grid,
                                                     int("class_embedding" in sd))
    return official_to_timm(sd) if to == "timm" else sd
