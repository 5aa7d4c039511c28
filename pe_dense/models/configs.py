"""The ten published PE vision-tower configurations (PE_FACTS section 1)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class PEConfig:
    """Architecture of one PE vision tower. Names follow the official release."""

    name: str
    patch_size: int
    image_size: int
    width: int
    layers: int
    heads: int
    mlp_width: int
    use_cls_token: bool = True
    ls_init: Optional[float] = None  # LayerScale init; None = no LayerScale parameters
    pool_type: str = "none"  # "none" | "attn"
    use_ln_post: bool = False
    output_dim: Optional[int] = None  # projection after the attention pool (Core models)
    attn_pool_heads: int = 8
    timm_name: Optional[str] = None  # the timm port of this config, if any
    # Patch size the checkpoint was pretrained with. A patch-14 model run at patch 16 (the released detectors)
    # keeps 14 here, so its pretraining grid stays image_size // 14 = 32 (see ``pretrain_grid``).
    pretrain_patch_size: Optional[int] = None

    def __post_init__(self):
        if self.pretrain_patch_size is None:
            object.__setattr__(self, "pretrain_patch_size", self.patch_size)

    @property
    def grid_size(self) -> int:
        """Token grid side at the config's native image size with its current patch size."""
        return self.image_size // self.patch_size

    @property
    def pretrain_grid(self) -> int:
        """Token grid side the checkpoint was pretrained at (32 for every Spatial model). It belongs to the weights,
        not to the patch size in use: the stored position grid and the RoPE reference grid of the detection code."""
        return self.image_size // self.pretrain_patch_size

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.use_cls_token)

    def replace(self, **overrides) -> "PEConfig":
        return dataclasses.replace(self, **overrides)


def _spatial(name, patch, img, width, layers, heads, mlp, timm_name, **kw):
    return PEConfig(name, patch, img, width, layers, heads, mlp, timm_name=timm_name, **kw)


def _core(name, patch, img, width, layers, heads, mlp, out, **kw):
    return PEConfig(name, patch, img, width, layers, heads, mlp, pool_type="attn", use_ln_post=True,
                    output_dim=out, **kw)


PE_CONFIGS = {c.name: c for c in [
    _spatial("PE-Spatial-T16-512", 16, 512, 192, 12, 3, 768, "vit_pe_spatial_tiny_patch16_512"),
    _spatial("PE-Spatial-S16-512", 16, 512, 384, 12, 6, 1536, "vit_pe_spatial_small_patch16_512"),
    _spatial("PE-Spatial-B16-512", 16, 512, 768, 12, 12, 3072, "vit_pe_spatial_base_patch16_512"),
    _spatial("PE-Spatial-L14-448", 14, 448, 1024, 24, 16, 4096, "vit_pe_spatial_large_patch14_448"),
    _spatial("PE-Spatial-G14-448", 14, 448, 1536, 50, 16, 8960, "vit_pe_spatial_gigantic_patch14_448",
             use_cls_token=False, ls_init=0.1),
    _core("PE-Core-T16-384", 16, 384, 192, 12, 3, 768, 512),
    _core("PE-Core-S16-384", 16, 384, 384, 12, 6, 1536, 512),
    _core("PE-Core-B16-224", 16, 224, 768, 12, 12, 3072, 1024),
    _core("PE-Core-L14-336", 14, 336, 1024, 24, 16, 4096, 1024),
    _core("PE-Core-G14-448", 14, 448, 1536, 50, 16, 8960, 1280, use_cls_token=False),
]}


def get_config(name: str) -> PEConfig:
    try:
        return PE_CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown PE config {name!r}; known: {', '.join(PE_CONFIGS)}") from None
