"""Reading PE checkpoints: file formats, wrappers, prefixes, timm <-> official layout, and clear mismatch errors.

Accepted: ``.pt``/``.pth`` torch files (flat, or nested under ``state_dict``/``model``/``weights``/``module``;
``module.`` and ``visual.`` prefixes stripped, ``visual.`` keys kept alone when present, as the official loader
does) and ``.safetensors``; each in the official layout or in timm's (``vit_pe_*``), detected by key names.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from .configs import PE_CONFIGS, PEConfig

StateDict = Dict[str, torch.Tensor]

# (official, timm) key templates; {i} is a block index, {kind} weight|bias. A template ending in "." is a prefix.
# Attention-pool q/kv split and the projection head are handled apart.
_KEY_RULES: List[Tuple[str, str]] = [
    ("conv1.", "patch_embed.proj."),
    ("positional_embedding", "pos_embed"),
    ("class_embedding", "cls_token"),
    ("ln_pre.", "norm_pre."),
    ("ln_post.", "norm."),
    ("transformer.resblocks.{i}.ln_1.", "blocks.{i}.norm1."),
    ("transformer.resblocks.{i}.ln_2.", "blocks.{i}.norm2."),
    ("transformer.resblocks.{i}.ls_1.gamma", "blocks.{i}.gamma_1"),
    ("transformer.resblocks.{i}.ls_2.gamma", "blocks.{i}.gamma_2"),
    ("transformer.resblocks.{i}.attn.in_proj_{kind}", "blocks.{i}.attn.qkv.{kind}"),
    ("transformer.resblocks.{i}.attn.out_proj.", "blocks.{i}.attn.proj."),
    ("transformer.resblocks.{i}.mlp.c_fc.", "blocks.{i}.mlp.fc1."),
    ("transformer.resblocks.{i}.mlp.c_proj.", "blocks.{i}.mlp.fc2."),
    ("attn_pool.probe", "attn_pool.latent"),
    ("attn_pool.attn.out_proj.", "attn_pool.proj."),
    ("attn_pool.layernorm.", "attn_pool.norm."),
    ("attn_pool.mlp.c_fc.", "attn_pool.mlp.fc1."),
    ("attn_pool.mlp.c_proj.", "attn_pool.mlp.fc2."),
]


def _compile(template: str) -> "re.Pattern":
    rx = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{kind\}", r"(?P<kind>weight|bias)")
    return re.compile("^" + rx + ("" if template.endswith(".") else "$"))


def _rename(key: str, rules) -> str:
    for rx, dst in rules:
        m = rx.match(key)
        if m:
            return dst.format(**m.groupdict()) + key[m.end():]
    return key


_TO_TIMM = [(_compile(a), b) for a, b in _KEY_RULES]
_TO_OFFICIAL = [(_compile(b), a) for a, b in _KEY_RULES]


def is_timm_layout(sd: StateDict) -> bool:
    return "patch_embed.proj.weight" in sd


def official_to_timm(sd: StateDict) -> StateDict:
    """Rename an official-layout state dict to timm's PE layout (shapes changed where timm's differ)."""
    out: StateDict = {}
    for k, v in sd.items():
        if k.startswith("attn_pool.attn.in_proj_"):
            kind = k.rsplit("_", 1)[1]
            dim = v.shape[0] // 3
            out[f"attn_pool.q.{kind}"], out[f"attn_pool.kv.{kind}"] = v[:dim], v[dim:]
            continue
        if k == "proj":
            out["head.weight"], out["head.bias"] = v.t().contiguous(), v.new_zeros(v.shape[1])
            continue
        k = _rename(k, _TO_TIMM)
        if k == "cls_token":
            v = v.reshape(1, 1, -1)
        elif k == "pos_embed":
            v = v.unsqueeze(0)
        out[k] = v
    return out


def timm_to_official(sd: StateDict) -> StateDict:
    """Inverse of :func:`official_to_timm`."""
    out: StateDict = {}
    for kind in ("weight", "bias"):
        if f"attn_pool.q.{kind}" in sd:
            out[f"attn_pool.attn.in_proj_{kind}"] = torch.cat([sd[f"attn_pool.q.{kind}"], sd[f"attn_pool.kv.{kind}"]])
    for k, v in sd.items():
        if k.startswith(("attn_pool.q.", "attn_pool.kv.")) or k == "head.bias" or "rope" in k:
            continue
        if k == "head.weight":
            out["proj"] = v.t().contiguous()
            continue
        k = _rename(k, _TO_OFFICIAL)
        if k == "class_embedding":
            v = v.reshape(-1)
        elif k == "positional_embedding" and v.ndim == 3:
            v = v[0]
        out[k] = v
    return out


def read_checkpoint_file(path: str, trusted: bool = False) -> dict:
    """Load a ``.pt``/``.pth``/``.safetensors`` file onto the CPU.

    Torch files load with ``weights_only=True`` unless ``trusted=True`` (needed for training checkpoints that
    pickle optimizer arguments; only for files you made or trust).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; PE weights must be local files "
                                "(download them once, then pass checkpoint=PATH)")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # noqa: BLE001 - re-raised with the fix
        if not trusted and "weights_only" in str(err).lower():
            raise RuntimeError(f"{path} holds pickled objects besides tensors; if you trust this file, load it "
                               "with trusted=True (tools: --trusted)") from err
        raise


def unwrap_state_dict(obj: dict) -> StateDict:
    """Find the vision-tower state dict inside a checkpoint and return it in the official layout."""
    for key in ("state_dict", "model", "weights", "module"):
        while isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if any(k.startswith("visual.") for k in sd):
        sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    return timm_to_official(sd) if is_timm_layout(sd) else sd


def load_state_dict_file(path: str, trusted: bool = False) -> StateDict:
    return unwrap_state_dict(read_checkpoint_file(path, trusted=trusted))


def guess_config(sd: StateDict) -> Optional[PEConfig]:
    """The published config whose shapes this state dict matches best (None if nothing is close)."""
    w = sd.get("conv1.weight")
    if w is None:
        return None
    layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    cands = [c for c in PE_CONFIGS.values() if c.width == w.shape[0]]
    score = lambda c: ((c.layers == layers) + (c.patch_size == w.shape[-1])  # noqa: E731
                       + (("attn_pool.probe" in sd) == (c.pool_type == "attn"))
                       + (("class_embedding" in sd) == c.use_cls_token))
    return max(cands, key=score) if cands else None


def state_dict_mismatch(model_sd: StateDict, sd: StateDict):
    missing = sorted(set(model_sd) - set(sd))
    unexpected = sorted(set(sd) - set(model_sd))
    shapes = sorted((k, tuple(sd[k].shape), tuple(model_sd[k].shape)) for k in set(sd) & set(model_sd)
                    if sd[k].shape != model_sd[k].shape)
    return missing, unexpected, shapes


def _short(keys: Iterable, n: int = 12) -> str:
    keys = list(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(map(str, keys[:n])) + more


class CheckpointMismatchError(RuntimeError):
    pass


def load_pe_checkpoint(model, path_or_sd, strict: bool = True, trusted: bool = False):
    """Load weights into a :class:`PEVisionTransformer`; on mismatch raise one error naming every problem."""
    sd = load_state_dict_file(path_or_sd, trusted) if isinstance(path_or_sd, str) else unwrap_state_dict(path_or_sd)
    missing, unexpected, shapes = state_dict_mismatch(model.state_dict(), sd)
    if shapes or (strict and (missing or unexpected)):
        guess = guess_config(sd)
        lines = [f"checkpoint does not fit {model.cfg.name} (width {model.cfg.width}, {model.cfg.layers} blocks, "
                 f"patch {model.cfg.patch_size}):"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_short(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_short(unexpected)}")
        if shapes:
            lines.append("  mis-shaped keys (checkpoint vs model): "
                         + _short(f"{k} {a} vs {b}" for k, a, b in shapes))
        if guess is not None:
            lines.append(f"  the file looks like {guess.name}: build that config, or convert the file with "
                         "tools/convert_checkpoint.py (e.g. --patch-size 16 for patch-14 kernels)")
        raise CheckpointMismatchError("\n".join(lines))
    return model.load_state_dict(sd, strict=strict)
