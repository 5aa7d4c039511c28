"""The alignment student: a PE-Core tower re-headed as a PE-Spatial tower, and its export in the official layout.

PE-Spatial G is PE-Core G without the Core heads (ln_post, attention pool, projection) and with LayerScale
(init 0.1) added as the only new parameters (PE_FACTS section 5). The saved student is a flat state dict with the
official parameter names, so it loads with ``strict=True`` into ``PEVisionTransformer``, ``PEBackbone`` and, through
``official_to_timm``, into timm's port.
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch

from pe_dense.convert.pe import resize_pos_grid
from pe_dense.io import atomic_save
from pe_dense.models.checkpoint import load_state_dict_file
from pe_dense.models.configs import PEConfig, get_config
from pe_dense.models.pe import PEVisionTransformer

CORE_HEAD_PREFIXES = ("ln_post.", "attn_pool.", "proj")


def spatial_config_from_core(core: PEConfig, ls_init: Optional[float] = 0.1) -> PEConfig:
    """The Spatial architecture of a Core config: no pool, no ln_post, no projection, LayerScale ``ls_init``."""
    name = core.name.replace("Core", "Spatial") + "-aligned"
    return core.replace(name=name, pool_type="none", use_ln_post=False, output_dim=None, ls_init=ls_init)


def build_student(core_name: str, checkpoint: Optional[str] = None, ls_init: Optional[float] = 0.1,
                  trusted: bool = False, config_overrides: Optional[dict] = None,
                  **model_kwargs) -> PEVisionTransformer:
    """Student initialised from a Core checkpoint (or random with ``checkpoint=None``, for tests).

    Only the Core heads may be absent from the student and only LayerScale may be absent from the checkpoint;
    anything else is an error that names the keys."""
    core = get_config(core_name).replace(**(config_overrides or {}))
    model = PEVisionTransformer(spatial_config_from_core(core, ls_init), **model_kwargs)
    if checkpoint is not None:
        sd = {k: v for k, v in load_state_dict_file(checkpoint, trusted).items()
              if not k.startswith(CORE_HEAD_PREFIXES)}
        pos = sd.get("positional_embedding")
        if pos is not None and pos.shape != model.positional_embedding.shape:
            # a Core tower trained at another grid (T/S/B at 384/224 px) becomes a 32x32 Spatial student: store
            # the table resized once, bilinearly as the tower itself resizes it on the fly (official semantics)
            sd["positional_embedding"] = resize_pos_grid(pos, model.pos_grid, model.num_prefix_tokens, "bilinear")
        result = model.load_state_dict(sd, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith((".ls_1.gamma", ".ls_2.gamma"))]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"{checkpoint} is not a {core.name} checkpoint: missing {missing[:8]}, unexpected "
                               f"{result.unexpected_keys[:8]}; pass the Core checkpoint of the student's config")
    return model


def init_student_from(student: PEVisionTransformer, core: PEVisionTransformer) -> None:
    """Copy a Core tower's weights into the student (everything but the Core heads; LayerScale keeps its init)."""
    sd = {k: v for k, v in core.state_dict().items() if not k.startswith(CORE_HEAD_PREFIXES)}
    result = student.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith((".ls_1.gamma", ".ls_2.gamma"))]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"{core.cfg.name} does not fit the student {student.cfg.name}: missing {missing[:8]}, "
                           f"unexpected {result.unexpected_keys[:8]}; use the Core config the student was built from")


def save_student(model: Union[PEVisionTransformer, Dict[str, torch.Tensor]], path: str) -> None:
    """Atomically write the student's weights (a model or its full state dict, e.g. gathered from FSDP ranks):
    flat, official names, float32, no teacher or optimizer state."""
    sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
    sd = {k: v.detach().float().cpu().contiguous() for k, v in sd.items()}
    atomic_save(sd, path)


def load_student(path: str, cfg: PEConfig, **model_kwargs) -> PEVisionTransformer:
    """Load a saved student strictly (the round trip the exported file must survive)."""
    model = PEVisionTransformer(cfg, **model_kwargs)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model
