"""Released PE DETA checkpoint (``deta_coco_1824pix.pth``) -> our mmdet ``DETA`` model.

Where the key map comes from. Source names are the modules of the public DETA code (jozhang97/DETA,
``models/deformable_detr.py`` and ``models/deformable_transformer.py``) as used by the PE release
(perception_models ``apps/detection/DETA_pe``, whose backbone ``models/pev1.py`` keeps the official PE
names under ``backbone.0.body.`` and holds the stride-8 transposed conv ``fpn1``); the key list with shapes is
``/work/shared/layouts/deta_pe_spatial_g_coco1824.json``. Target names are those of mmdet 3.3.0 / mmcv 2.1.0:

================================================  ===========================================================
DETA release                                      ours
================================================  ===========================================================
backbone.0.body.{conv1,ln_pre,transformer}.*      backbone.* (same official PE names)
backbone.0.body.positional_embedding [1,N,W]      backbone.positional_embedding [N,W] (24x24 grid, tiled)
backbone.0.body.fpn1.0.*                          neck.fpn1.* (``DETAPyramid``)
input_proj.{0,1,2}.{0,1}.*                        neck.mapper.convs.{i}.{conv,gn}.* (mmdet ``ChannelMapper``)
input_proj.{3,4}.{0,1}.*                          neck.mapper.extra_convs.{i-3}.{conv,gn}.*
transformer.level_embed                           level_embed
transformer.encoder.layers.i.self_attn.*          encoder.layers.i.self_attn.* (mmcv MSDeformAttn, same names)
transformer.encoder.layers.i.norm{1,2}            encoder.layers.i.norms.{0,1}
transformer.{en,de}coder.layers.i.linear{1,2}     ...layers.i.ffn.layers.{0.0,1} (mmcv ``FFN``)
transformer.decoder.layers.i.self_attn.*          decoder.layers.i.self_attn.attn.* (mmcv wraps nn.MHA)
transformer.decoder.layers.i.cross_attn.*         decoder.layers.i.cross_attn.*
transformer.decoder.layers.i.norm{2,1,3}          decoder.layers.i.norms.{0,1,2} (DETA: norm2 after self-attn,
                                                  norm1 after cross-attn, norm3 after the FFN)
transformer.enc_output{,_norm}                    memory_trans_{fc,norm}
transformer.pos_trans{,_norm}                     pos_trans_{fc,norm}
transformer.pix_trans{,_norm}                     pix_trans_{fc,norm}
class_embed.i                                     bbox_head.cls_branches.i (i = num_layers: proposals)
bbox_embed.i.layers.j                             bbox_head.reg_branches.i.{2j} (Linear, ReLU, ... Sequential)
================================================  ===========================================================

Dropped: ``transformer.decoder.{class,bbox}_embed.*`` (the same modules as ``{class,bbox}_embed.*``, checked
equal) and the RoPE tables ``*rope*.freqs_{cos,sin}`` (derived from the input size, not learned).

Classes: DETA predicts 91 logits indexed by COCO category id. ``classes="coco80"`` keeps the rows of the 80
used ids in mmdet's ``CocoDataset`` order; the proposal branch keeps row 0 first (its class-agnostic object
score) followed by 79 unused rows. ``classes=None`` keeps all 91 rows (build the model with num_classes=91).

The computation of the release is set by ``configs/deta_pe_g14_coco_1824.py`` (and the other G stage configs), which
match what Meta's code runs: ImageNet mean/std; PIL decoding and the DETR resize rule (``DETRResize``: long side
truncated, PIL bilinear); RoPE ``arange(n) / n * 16 + 1``; block LayerNorm eps 1e-5 (the ``eps=1e-6`` the release
passes is never used); zero-padded windows; boxes not clipped to the image at test time.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Optional

import torch

from pe_dense.errors import PEDenseError

StateDict = Dict[str, torch.Tensor]

# COCO category ids of mmdet's 80 CocoDataset classes, in its order (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83
# are unused by the 2017 annotations).
COCO80_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]

_DECODER_NORMS = {"norm2": "norms.0", "norm1": "norms.1", "norm3": "norms.2"}
_ENCODER_NORMS = {"norm1": "norms.0", "norm2": "norms.1"}
_FFN = {"linear1": "ffn.layers.0.0", "linear2": "ffn.layers.1"}
_TRANSFORMER_TOP = {"level_embed": "level_embed", "enc_output": "memory_trans_fc",
                    "enc_output_norm": "memory_trans_norm", "pos_trans": "pos_trans_fc",
                    "pos_trans_norm": "pos_trans_norm", "pix_trans": "pix_trans_fc", "pix_trans_norm": "pix_trans_norm"}
_NUM_BACKBONE_LEVELS = 3  # p3 (fpn1), p4, p5 feed input_proj 0..2; input_proj 3.. are the extra stride-2 levels


class NotADETACheckpoint(PEDenseError, ValueError):
    """The file given to the DETA converter is not a DETA checkpoint (the message says what it looks like)."""


class UnexpectedDETAKey(NotADETACheckpoint, KeyError):
    """A key the DETA layout does not have (a ``KeyError`` as before, and a :class:`NotADETACheckpoint`)."""


def unwrap_deta_checkpoint(obj) -> StateDict:
    """The model state dict of a DETA training file (``{'model': ..., 'optimizer': ..., ...}``) or a flat dict."""
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise NotADETACheckpoint("expected a DETA checkpoint ({'model': state_dict, ...}) or its state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _map_key(key: str) -> Optional[str]:
    """Our key for one released key; None for keys that are dropped on purpose."""
    if "rope" in key and ".freqs_" in key:
        return None
    if key.startswith("transformer.decoder.class_embed.") or key.startswith("transformer.decoder.bbox_embed."):
        return None
    if key.startswith("backbone.0.body."):
        rest = key[len("backbone.0.body."):]
        if rest.startswith("fpn1.0."):
            return "neck.fpn1." + rest[len("fpn1.0."):]
        return "backbone." + rest
    m = re.fullmatch(r"input_proj\.(\d+)\.([01])\.(\w+)", key)
    if m:
        i, part, kind = int(m.group(1)), ("conv", "gn")[int(m.group(2))], m.group(3)
        where = f"convs.{i}" if i < _NUM_BACKBONE_LEVELS else f"extra_convs.{i - _NUM_BACKBONE_LEVELS}"
        return f"neck.mapper.{where}.{part}.{kind}"
    m = re.fullmatch(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(\w+)\.(.+)", key)
    if m:
        coder, i, module, rest = m.groups()
        prefix = f"{coder}.layers.{i}."
        norms = _ENCODER_NORMS if coder == "encoder" else _DECODER_NORMS
        if module in norms:
            return prefix + f"{norms[module]}.{rest}"
        if module in _FFN:
            return prefix + f"{_FFN[module]}.{rest}"
        if coder == "decoder" and module == "self_attn":
            return prefix + f"self_attn.attn.{rest}"
        if module in ("self_attn", "cross_attn"):
            return prefix + f"{module}.{rest}"
    m = re.fullmatch(r"transformer\.(\w+?)(\.weight|\.bias)?", key)
    if m and m.group(1) in _TRANSFORMER_TOP:
        return _TRANSFORMER_TOP[m.group(1)] + (m.group(2) or "")
    m = re.fullmatch(r"class_embed\.(\d+)\.(weight|bias)", key)
    if m:
        return f"bbox_head.cls_branches.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"bbox_embed\.(\d+)\.layers\.(\d+)\.(weight|bias)", key)
    if m:
        return f"bbox_head.reg_branches.{m.group(1)}.{2 * int(m.group(2))}.{m.group(3)}"
    raise UnexpectedDETAKey(f"unexpected key {key!r} in a DETA checkpoint: is this the released deta_coco_1824pix.pth "
                            "(or a DETA-layout file)? Mask R-CNN files convert with --kind d2-mask-rcnn")


def _check_duplicates(sd: StateDict) -> None:
    """``transformer.decoder.{class,bbox}_embed`` alias ``{class,bbox}_embed``; refuse files where they differ."""
    for key, value in sd.items():
        if key.startswith("transformer.decoder.class_embed.") or key.startswith("transformer.decoder.bbox_embed."):
            twin = key[len("transformer.decoder."):]
            if twin in sd and not torch.equal(sd[twin], value):
                raise NotADETACheckpoint(f"{key} differs from {twin}; in DETA they are one module, so this file was "
                                         "edited or is not a DETA checkpoint")


def convert_deta_checkpoint(state_dict, classes: Optional[str] = "coco80") -> StateDict:
    """Map a released DETA (PE) state dict to the keys of our mmdet ``DETA`` (PEBackbone + DETAPyramid).

    Args:
        state_dict: the training file's content (``{'model': ...}``) or its model state dict.
        classes: ``"coco80"`` to keep mmdet's 80 COCO classes from the 91 category-id logits, or ``None``.

    Returns:
        A flat state dict for ``model.load_state_dict(..., strict=True)``.
    """
    if classes not in ("coco80", None):
        raise ValueError(f"classes={classes!r}; use 'coco80' or None")
    sd = unwrap_deta_checkpoint(state_dict)
    _check_duplicates(sd)
    cls_ids = sorted({int(k.split(".")[1]) for k in sd if re.fullmatch(r"class_embed\.\d+\.weight", k)})
    proposal_branch = max(cls_ids) if cls_ids else None
    out: StateDict = {}
    for key, value in sd.items():
        new = _map_key(key)
        if new is None:
            continue
        if new == "backbone.positional_embedding" and value.ndim == 3:
            value = value.squeeze(0)  # (1, N, W) in the release, (N, W) in the official/our layout
        m = re.fullmatch(r"bbox_head\.cls_branches\.(\d+)\.(weight|bias)", new)
        if m and classes == "coco80":
            if value.shape[0] != 91:
                raise ValueError(f"{key} has {value.shape[0]} classes; classes='coco80' expects DETA's 91 COCO "
                                 "category-id logits (pass classes=None to keep them as they are)")
            rows = COCO80_CATEGORY_IDS if int(m.group(1)) != proposal_branch else [0] + COCO80_CATEGORY_IDS[1:]
            value = value[rows]
        out[new] = value
    return out
