"""Released detectron2 (ViTDet-style) PE Mask R-CNN checkpoints -> our mmdet Mask R-CNN (configs/mask_rcnn_pe_*).

Input: ``mask_rcnn_PEspatial_G_coco36ep.pth`` / ``..._lvis75ep.pth`` as loaded by ``torch.load`` (a dict
``{'model': state_dict, 'trainer': ..., 'iteration': ...}``) or the bare ``state_dict``. Key layouts:
``/work/shared/layouts/d2_mask_rcnn_pe_spatial_g_{coco,lvis}.json`` (built from the official code, perception_models
3e352cc). Where each map comes from:

- ``backbone.net.*`` holds the official PE names (PE_FACTS section 3), which our ``PEBackbone`` keeps, so only the
  prefix changes. ``positional_embedding`` is stored ``[1, 1024, W]`` (a 32x32 grid tiled over windows) and ours is
  ``[1024, W]`` (``pos_grid=32, pos_embed_resize='tile'`` in the configs). The RoPE tables (``rope_win``,
  ``rope_glb``, ``attn.rope.freqs_{cos,sin}``) are derived from positions, not learned: dropped.
- ``backbone.simfp_{2,3,4,5}`` is detectron2's ``SimpleFeaturePyramid`` for scales 4, 2, 1, 0.5 (levels p2..p5):
  a ``Sequential`` of resampling layers followed by a 1x1 conv and a 3x3 conv, each ``Conv2d`` with a ``.norm``
  sub-module (LN). Ours (``pe_dense.mm.SimpleFeaturePyramid``) splits the same layers into ``stages.{i}.rescale``
  (a ``Sequential`` for scale 4, a bare ``ConvTranspose2d`` for scale 2), ``lateral.{0 conv, 1 norm}`` and
  ``output.{0 conv, 1 norm}``. The max-pool top level (p6) has no parameters.
- ``proposal_generator.rpn_head``: detectron2's ``StandardRPNHead`` with ``conv_dims=[-1, -1]`` (two 3x3 conv +
  ReLU, ``conv.conv{0,1}``), ``objectness_logits`` (1 logit per anchor) and ``anchor_deltas`` (4 per anchor,
  anchor-major). mmdet's ``RPNHead(num_convs=2)`` has ``rpn_conv.{0,1}.conv``, ``rpn_cls``, ``rpn_reg`` in the same
  order: both enumerate the 3 aspect ratios (0.5, 1, 2; height/width) of one size per level, and both code boxes
  as (dx, dy, dw, dh) with unit weights.
- ``roi_heads.box_head``: ``FastRCNNConvFCHead`` ``conv1..4`` (+ ``.norm``), ``fc1`` on the (C, 7, 7)-flattened RoI
  feature -> mmdet ``ConvFCBBoxHead`` ``shared_convs.{0..3}.conv`` / ``.ln`` (mmcv's ``ConvModule`` names an LN
  ``ln``), ``shared_fcs.0``; flattening order is the same.
- ``roi_heads.box_predictor``: ``cls_score`` has K + 1 rows with background last, the layout of mmdet's
  ``BBoxHead.fc_cls`` too (labels 0..K-1 are classes, K background), so rows map one to one. Classes follow the
  ascending dataset category ids in both (detectron2's contiguous ids; mmdet's ``CocoDataset``/``LVISV1Dataset``
  class tuples). ``bbox_pred`` is class-specific, K x 4 in class-major order with weights (10, 10, 5, 5) =
  mmdet's ``fc_reg`` with target_stds (0.1, 0.1, 0.2, 0.2). For LVIS (sigmoid + federated loss) the background
  row exists but is unused in both codes; ``fed_loss_cls_weights`` -> our ``FederatedConvFCBBoxHead`` buffer.
- ``roi_heads.mask_head``: ``MaskRCNNConvUpsampleHead`` ``mask_fcn1..4`` (+ ``.norm``), ``deconv``, ``predictor``
  -> mmdet ``FCNMaskHead`` ``convs.{0..3}.conv`` / ``.ln``, ``upsample``, ``conv_logits``.

The weights are only half of reproducing the release; the computation is set by ``configs/mask_rcnn_pe_g14_{coco,
lvis}.py``, which match what Meta's code runs (not what its config files claim): pixels normalised with mean = std
= 127 and padded with 0 after normalisation; RoPE positions ``arange(n) / n * 32 + 1`` (the checkpoint's 32x32
pretraining grid, also at patch 16); block LayerNorm eps 1e-5 (the ``eps=1e-6`` of the release config is never
used). The RoI heads read contiguous maps (``ContiguousRoIExtractor``): mmcv's RoIAlign misreads any other layout.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

import torch

from pe_dense.errors import PEDenseError

StateDict = Dict[str, torch.Tensor]

# simfp level -> (our stage index, index of its 1x1 lateral conv (resampling layers, incl. parameter-free GELU and
# max-pool, come before it), whether our rescale is a Sequential (indices kept) or a bare module)
_SIMFP_LEVELS = {2: (0, 4, True), 3: (1, 1, False), 4: (2, 0, False), 5: (3, 1, False)}
_FIXED = [
    (r"proposal_generator\.rpn_head\.conv\.conv(\d+)\.(weight|bias)", "rpn_head.rpn_conv.{0}.conv.{1}"),
    (r"proposal_generator\.rpn_head\.objectness_logits\.(weight|bias)", "rpn_head.rpn_cls.{0}"),
    (r"proposal_generator\.rpn_head\.anchor_deltas\.(weight|bias)", "rpn_head.rpn_reg.{0}"),
    (r"roi_heads\.box_head\.fc(\d+)\.(weight|bias)", "roi_head.bbox_head.shared_fcs.{0-1}.{1}"),
    (r"roi_heads\.box_predictor\.cls_score\.(weight|bias)", "roi_head.bbox_head.fc_cls.{0}"),
    (r"roi_heads\.box_predictor\.bbox_pred\.(weight|bias)", "roi_head.bbox_head.fc_reg.{0}"),
    (r"roi_heads\.box_predictor\.fed_loss_cls_weights", "roi_head.bbox_head.fed_loss_cls_weights"),
    (r"roi_heads\.mask_head\.deconv\.(weight|bias)", "roi_head.mask_head.upsample.{0}"),
    (r"roi_heads\.mask_head\.predictor\.(weight|bias)", "roi_head.mask_head.conv_logits.{0}"),
]
# convs with a ``.norm`` child: (detectron2 prefix pattern, our ConvModule prefix)
_NORMED_CONVS = [
    (r"roi_heads\.box_head\.conv(\d+)", "roi_head.bbox_head.shared_convs.{0-1}"),
    (r"roi_heads\.mask_head\.mask_fcn(\d+)", "roi_head.mask_head.convs.{0-1}"),
]


class NotADetectron2MaskRCNN(PEDenseError, ValueError):
    pass


def _fmt(template: str, groups) -> str:
    """Format ``{i}`` with group i and ``{i-1}`` with int(group i) - 1."""
    def sub(m):
        idx, minus = int(m.group(1)), m.group(2)
        return str(int(groups[idx]) - 1) if minus else groups[idx]
    return re.sub(r"\{(\d+)(-1)?\}", sub, template)


def _map_simfp(level: int, rest: str) -> Optional[str]:
    stage, first_conv, sequential = _SIMFP_LEVELS[level]
    m = re.fullmatch(r"(\d+)\.(norm\.)?(weight|bias)", rest)
    if m is None:
        return None
    idx, norm, kind = int(m.group(1)), m.group(2), m.group(3)
    if idx < first_conv:
        if norm:
            return None
        return f"neck.stages.{stage}.rescale.{idx}.{kind}" if sequential else f"neck.stages.{stage}.rescale.{kind}"
    part = {first_conv: "lateral", first_conv + 1: "output"}.get(idx)
    if part is None:
        return None
    return f"neck.stages.{stage}.{part}.{1 if norm else 0}.{kind}"


def map_d2_key(key: str) -> Optional[str]:
    """Our key for a detectron2 key; ``None`` for the RoPE tables (dropped). Raises for anything unknown."""
    if key.startswith("backbone.net."):
        if key.startswith("backbone.net.rope_") or ".attn.rope." in key:
            return None
        return "backbone." + key[len("backbone.net."):]
    m = re.fullmatch(r"backbone\.simfp_(\d)\.(.+)", key)
    if m and int(m.group(1)) in _SIMFP_LEVELS:
        out = _map_simfp(int(m.group(1)), m.group(2))
        if out is not None:
            return out
    for pattern, template in _FIXED:
        m = re.fullmatch(pattern, key)
        if m:
            return _fmt(template, m.groups())
    for pattern, template in _NORMED_CONVS:
        m = re.fullmatch(pattern + r"\.(norm\.)?(weight|bias)", key)
        if m:
            prefix = _fmt(template, m.groups())
            return f"{prefix}.{'ln' if m.group(2) else 'conv'}.{m.group(3)}"
    raise NotADetectron2MaskRCNN(f"unknown key {key!r} for a detectron2 ViTDet Mask R-CNN")


def unwrap_d2_checkpoint(obj) -> StateDict:
    """The model state dict of a detectron2 checkpoint (``{'model': ...}``) or of a bare state dict."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise NotADetectron2MaskRCNN(f"expected a dict checkpoint, got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith("backbone.simfp_") for k in sd) or not any(k.startswith("roi_heads.") for k in sd):
        hint = ""
        if any(k.startswith("backbone.0.body.") or k.startswith("transformer.decoder.") for k in sd):
            hint = " It looks like the DETA checkpoint: use --kind deta (pe_dense.convert.deta)."
        elif any(k.startswith(("roi_head.", "neck.stages.")) for k in sd):
            hint = " It is already in our mmdet layout: load it directly."
        raise NotADetectron2MaskRCNN("not a detectron2 PE Mask R-CNN checkpoint (no backbone.simfp_* / roi_heads.* "
                                     f"keys).{hint}")
    return sd


def convert_d2_mask_rcnn(state_dict) -> StateDict:
    """Released detectron2 PE Mask R-CNN (checkpoint dict or state dict) -> state dict of our mmdet Mask R-CNN.

    Load the result into a model built from ``configs/mask_rcnn_pe_g14_coco.py`` (or ``..._lvis.py``) with
    ``strict=True``; every released tensor is used except the RoPE tables.
    """
    sd = unwrap_d2_checkpoint(state_dict)
    out: StateDict = {}
    for key, value in sd.items():
        new = map_d2_key(key)
        if new is None:
            continue
        if new == "backbone.positional_embedding" and value.ndim == 3:
            value = value[0]
        if new in out:
            raise NotADetectron2MaskRCNN(f"two keys map to {new!r}; is this a detectron2 Mask R-CNN checkpoint?")
        out[new] = value
    return out
