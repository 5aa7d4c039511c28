"""Reading PE checkpoints: file formats, wrappers, prefixes, timm <-> official layout, and clear mismatch errors.

Accepted: ``.pt``/``.pth`` torch files (flat, or nested under ``state_dict``/``model``/``weights``/``module``;
``module.`` and ``visual.`` prefixes stripped, ``visual.`` keys kept alone when present, as the official loader
does) and ``.safetensors``; each in the official layout or in timm's (``vit_pe_*``), detected by key names.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from pe_dense.errors import PEDenseError

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


class CheckpointReadError(PEDenseError, ValueError):
    """A checkpoint file that is empty, truncated or not a checkpoint at all."""


class UntrustedCheckpointError(PEDenseError, RuntimeError):
    """A torch file that pickles objects besides tensors, refused by the weights-only loader."""


def read_checkpoint_file(path: str, trusted: bool = False) -> dict:
    """Load a ``.pt``/``.pth``/``.safetensors`` file onto the CPU.

    Torch files load with ``weights_only=True`` unless ``trusted=True`` (needed for training checkpoints that
    pickle optimizer arguments; only for files you made or trust).
    """
    check_checkpoint_file(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        try:
            return load_file(path, device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own types; named with the file
            raise CheckpointReadError(f"checkpoint {path} is not a readable .safetensors file ({err}); it is "
                                      "truncated or corrupt: copy or convert it again") from err
    return torch_load_checked(path, trusted=trusted)


def check_checkpoint_file(path: str) -> None:
    """Cheap checks before loading: the path is a file, not empty, and a zip-format torch file is complete.

    torch reports these as ``OSError: [Errno 22] Invalid argument``, ``EOFError`` or an internal zip-reader
    error without the file name; a truncated zip has lost its central directory, found at the end.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path!r} is a directory; pass the .pt/.pth/.safetensors file in it")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} not found; PE weights must be local files (download them "
                                "once, then pass the path)")
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(f"checkpoint {path} is empty (0 bytes): an interrupted download or copy; fetch it "
                                  "again")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise CheckpointReadError(f"checkpoint {path} is truncated ({os.path.getsize(path)} bytes, its zip "
                                  "directory is missing): an interrupted download, copy or save; fetch or write it "
                                  "again (training checkpoints: resume from the previous one)")
    if not path.endswith(".safetensors") and head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointReadError(f"checkpoint {path} is not a torch file (it starts with {head!r}, neither a zip "
                                  "archive nor a pickle); pass a .pt/.pth written by torch.save or a .safetensors file")


def torch_load_checked(path: str, trusted: bool = False, **kwargs):
    """``torch.load`` on the CPU whose failures name the file and the fix (kwargs: e.g. ``mmap=True``)."""
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted, **kwargs)
    except pickle.UnpicklingError as err:
        if not trusted and "weights only load failed" in str(err).lower():
            msg = str(err)
            needs = msg.split("Unsupported global:")[1].split("was not an allowed")[0].strip() \
                if "Unsupported global:" in msg else "objects the weights-only loader refuses"
            raise UntrustedCheckpointError(
                f"{path} holds pickled objects besides tensors ({needs[:120]}), which could run code when loaded. "
                "If you trust this file, pass --trusted to the tool (tools/convert_checkpoint.py SRC DST --trusted "
                "writes a tensors-only copy) or trusted=True in Python") from err
        raise CheckpointReadError(f"checkpoint {path} cannot be unpickled ({err}); it is corrupt or not a torch "
                                  "checkpoint: fetch or write it again") from err
    except (RuntimeError, OSError, EOFError, KeyError, ValueError) as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise CheckpointReadError(f"checkpoint {path} is not a readable torch file ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:200] if str(err) else 'no detail'}); it is truncated, "
                                  "corrupt or another format: fetch or write it again") from err


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


class CheckpointMismatchError(PEDenseError, RuntimeError):
    """A checkpoint whose keys or shapes do not fit the model; lists them and names the likely config."""


def foreign_layout_hint(sd: StateDict) -> Optional[str]:
    """The fix for a detector checkpoint of another framework passed where a PE tower is expected."""
    if any(k.startswith(("backbone.net.", "backbone.simfp_", "roi_heads.", "proposal_generator.")) for k in sd):
        return ("this is a detectron2 Mask R-CNN checkpoint: convert it with tools/convert_checkpoint.py SRC DST "
                "--kind d2-mask-rcnn --trusted, then load DST in an mmdet config (its backbone.* keys are the tower)")
    if any(k.startswith(("backbone.0.body.", "transformer.decoder.")) for k in sd):
        return ("this is a DETA checkpoint: convert it with tools/convert_checkpoint.py SRC DST --kind deta --trusted, "
                "then load DST in a DETA config")
    if any(k.startswith("backbone.conv1.") for k in sd):
        return ("this is a pe_dense detector/probe checkpoint: its tower is under backbone.*; load it with the "
                "config it was trained with (tools/test.py) or keep the backbone.* keys without the prefix")
    return None


def require_pe_tower(sd: StateDict, source: str) -> None:
    """Refuse a state dict that is not a PE vision tower (e.g. a detector file given to the tower converter)."""
    if "conv1.weight" not in sd or not any(k.startswith("transformer.resblocks.") for k in sd):
        hint = foreign_layout_hint(sd) or ("expected the official PE names (conv1.weight, transformer.resblocks.*) "
                                           "or timm's (patch_embed.proj.weight, blocks.*)")
        raise CheckpointMismatchError(f"{source} is not a PE vision tower checkpoint (keys: {_short(sorted(sd), 6)}); "
                                      f"{hint}")


def load_pe_checkpoint(model, path_or_sd, strict: bool = True, trusted: bool = False, source: Optional[str] = None):
    """Load weights into a :class:`PEVisionTransformer`; on mismatch raise one error naming every problem (and the
    file: ``path_or_sd`` if it is a path, else ``source``)."""
    from_file = isinstance(path_or_sd, str)
    sd = load_state_dict_file(path_or_sd, trusted) if from_file else unwrap_state_dict(path_or_sd)
    source = path_or_sd if from_file else (source or "(state dict)")
    missing, unexpected, shapes = state_dict_mismatch(model.state_dict(), sd)
    if shapes or (strict and (missing or unexpected)):
        guess = guess_config(sd)
        lines = [f"checkpoint {source} does not fit {model.cfg.name} (width {model.cfg.width}, "
                 f"{model.cfg.layers} blocks, patch {model.cfg.patch_size}):"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_short(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_short(unexpected)}")
        if shapes:
            lines.append("  mis-shaped keys (checkpoint vs model): "
                         + _short(f"{k} {a} vs {b}" for k, a, b in shapes))
        hint = foreign_layout_hint(sd)
        if hint is not None:
            lines.append(f"  {hint}")
        elif guess is not None:
            lines.append(f"  the file looks like {guess.name}: build that config, or convert the file with "
                         "tools/convert_checkpoint.py (e.g. --patch-size 16 for patch-14 kernels)")
        raise CheckpointMismatchError("\n".join(lines))
    return model.load_state_dict(sd, strict=strict)
