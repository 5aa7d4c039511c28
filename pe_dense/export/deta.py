"""DETA as one fixed-size graph: normalised images in, ``boxes [B,K,4]``, ``scores``, ``labels``, ``num_dets`` out.

What changes against the eager model (``pe_dense.heads.deta``), and why:

- the PE tower's position embedding and RoPE tables are baked for the export size (:mod:`.baked`);
- the padding mask: with ``orig_size`` the graph takes each original ``(h, w)``, computes the letterboxed image
  size (:func:`.mask_rcnn.letterbox_hw`) and masks the padding exactly as mmdet's ``pre_transformer`` does (masked
  keys, valid ratios, sine positions from the mask, no proposals on padding; boxes relative to the image, not the
  input), at fixed shape (comparisons with ``arange``, no ``NonZero``/``If``). Without ``orig_size`` the graph
  cannot know where the padding is and treats the whole input as image: equal to the eager model only for
  images whose letterbox fills the input (``img_shape == batch_input_shape``);
- the level shapes are Python ints found once at construction, so deformable attention samples with plain
  ``grid_sample`` per level (mmcv's PyTorch path) and no shape is computed from data (as tensors they would be);
- DETA's per-level query selection and the class-wise NMS over queries x classes run at fixed size
  (:mod:`.fixed_nms`) instead of mmcv's ``batched_nms`` with its data-dependent length.
"""
from __future__ import annotations

import copy
import logging
from typing import Optional, Sequence, Tuple

import torch
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttention, multi_scale_deformable_attn_pytorch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn
from torch.nn import functional as F

from pe_dense.mm.backbone import PEBackbone

from .baked import BakedSizePE, SizeNotServedError, bake_for_size
from .feature_extractor import to_fp16_with_fp32_islands
from .fixed_nms import detections_from_queries, select_queries_fixed
from .mask_rcnn import clip_boxes, letterbox_hw

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("boxes", "scores", "labels", "num_dets")
RAW_OUTPUT_NAMES = ("query_logits", "query_boxes")  # final decoder layer, before NMS (parity checks)
DEFAULT_NMS_ITERATIONS = 8  # see DETAExport; exact greedy NMS needs N sequential steps
MAX_PRE_TOPK = 2000
# torch 2.14's exporter writes opset 18 natively and its down-conversion to 17 fails on this graph; GridSample is
# still mode "bilinear" at 18 and 19 (only 20 spells it "linear", which TensorRT runs as nearest)
DETA_OPSET = 18  # the IoU matrix of the in-graph NMS is pre_topk squared (DETA's 10000 would be 400 MB)


class BakedPEBackbone(BakedSizePE, PEBackbone):
    """A :class:`PEBackbone` (its multi-layer forward) whose tables are baked for one size."""


class FixedShapeDeformableAttention(nn.Module):
    """mmcv's deformable attention with the level shapes as Python ints (same parameters, same numbers).

    mmcv's forward asserts on and divides by the ``spatial_shapes`` tensor, which an exporter can only treat as
    data; here they are constants, and sampling is mmcv's ``multi_scale_deformable_attn_pytorch`` (one bilinear
    ``grid_sample`` per level, ``GridSample mode="bilinear"`` at opset <= 19).
    """

    def __init__(self, inner: MultiScaleDeformableAttention, level_shapes: Sequence[Tuple[int, int]]):
        super().__init__()
        self.inner = inner
        self.level_shapes = [(int(h), int(w)) for h, w in level_shapes]
        if len(self.level_shapes) != inner.num_levels:
            raise ValueError(f"{len(self.level_shapes)} level shapes for an attention over {inner.num_levels} "
                             "levels: the neck's num_outs and the attention's num_levels must agree")
        self.register_buffer("normaliser", torch.tensor([[w, h] for h, w in self.level_shapes], dtype=torch.float32),
                             persistent=False)

    def forward(self, query: Tensor, key=None, value: Optional[Tensor] = None, identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None, key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None, **unused) -> Tensor:
        m = self.inner
        value = query if value is None else value
        identity = query if identity is None else identity
        if query_pos is not None:
            query = query + query_pos
        if not m.batch_first:
            query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
        bs, nq, _ = query.shape
        value = m.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.reshape(bs, value.shape[1], m.num_heads, -1)
        offsets = m.sampling_offsets(query).view(bs, nq, m.num_heads, m.num_levels, m.num_points, 2)
        weights = m.attention_weights(query).view(bs, nq, m.num_heads, m.num_levels * m.num_points)
        weights = weights.softmax(-1).view(bs, nq, m.num_heads, m.num_levels, m.num_points)
        if reference_points.shape[-1] == 2:
            locations = reference_points[:, :, None, :, None, :] + offsets / self.normaliser[:, None, :]
        else:
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / m.num_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        out = m.output_proj(multi_scale_deformable_attn_pytorch(value, self.level_shapes, locations, weights))
        if not m.batch_first:
            out = out.permute(1, 0, 2)
        return m.dropout(out) + identity


def _replace_deformable_attention(model: nn.Module, level_shapes) -> int:
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, MultiScaleDeformableAttention)]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child,
                FixedShapeDeformableAttention(mod, level_shapes))
    return len(targets)


class DETAExport(nn.Module):
    """A built mmdet ``DETA`` wrapped for export at one (H, W).

    ``forward(images[, orig_hw])``: ``images`` (B, 3, H, W) float32, normalised as the config's data
    preprocessor does (RGB, ``(pixel - mean) / std``), letterboxed into H x W. Returns ``boxes [B,K,4]`` (xyxy,
    network-input pixels, or original pixels of an image of ``orig_hw = (h, w)`` when ``orig_size``),
    ``scores [B,K]``, ``labels [B,K]`` int64 (empty slots: score 0, label -1, zero box), ``num_dets [B]`` int64;
    with ``with_raw`` also the final decoder layer's ``query_logits [B,Q,C]`` and ``query_boxes [B,Q,4]``
    (normalised cx, cy, w, h), as the eager head returns them.

    Args:
        pre_topk: (query, class) pairs kept before NMS; default ``min(test_cfg.pre_topk, Q * C, 2000)``: smaller
            than the eager 10000 only when Q * C is larger (then a logged deviation).
        nms_iterations / selection_iterations: fixed-point iterations of the in-graph NMS
            (:func:`.fixed_nms.nms_keep_sorted`; ``None``: exact, as many as the longest possible suppression
            chain, Q for the class-wise NMS, a level's candidates for the selection). The default 8 is exact
            unless a chain of suppressions (a suppresses b, which would have suppressed c, ...) is longer than 8;
            an even count errs towards keeping a box such a chain should have removed, never drops one greedy
            NMS keeps. Each iteration costs an N x N pass, and every one is a node group in the graph.
        fp16: the PE tower in float16 with LayerNorm and attention in float32; the transformer stays float32.
    """

    def __init__(self, model: nn.Module, size: Tuple[int, int], max_dets: int = 100, orig_size: bool = False,
                 pre_topk: Optional[int] = None, nms_iterations: Optional[int] = DEFAULT_NMS_ITERATIONS,
                 selection_iterations: Optional[int] = DEFAULT_NMS_ITERATIONS, fp16: bool = False,
                 with_raw: bool = False):
        super().__init__()
        if not isinstance(model.backbone, PEBackbone):
            raise TypeError(f"DETAExport bakes a PEBackbone, got {type(model.backbone).__name__}: export a DETA "
                            "config whose backbone is type='PEBackbone'")
        self.size = tuple(int(s) for s in size)
        divisor = int(getattr(model.data_preprocessor, "pad_size_divisor", 1) or 1)
        if self.size[0] % divisor or self.size[1] % divisor:
            raise SizeNotServedError(
                f"export size {self.size[0]}x{self.size[1]} is not a multiple of the config's pad_size_divisor "
                f"{divisor}: the model never saw such an input. Export at a multiple of {divisor}")
        model = copy.deepcopy(model).eval()  # the caller's model stays as it was
        if fp16:
            to_fp16_with_fp32_islands(model.backbone)
        bake_for_size(model.backbone, self.size, copy_model=False)
        model.backbone.__class__ = BakedPEBackbone
        self.model = model
        self.fp16 = fp16
        with torch.no_grad():
            feats = self._features(torch.zeros(1, 3, *self.size))
            # the sine position embedding of an unpadded image depends on the level shapes only: a constant
            pos = torch.cat([model.positional_encoding(None, input=f.float()).flatten(2).transpose(1, 2)
                             for f in feats], 1)
        self.level_shapes = [tuple(int(s) for s in f.shape[-2:]) for f in feats]
        self.register_buffer("sine_pos", pos, persistent=False)
        if not orig_size:
            logger.warning("DETA export without orig_size: the graph sees the letterbox padding as image, so for "
                           "images whose letterbox does not fill %dx%d it differs from the eager model (which "
                           "masks the padding); export with orig_size=True (--orig-size) to mask it", *self.size)
        _replace_deformable_attention(model, self.level_shapes)

        head = model.bbox_head
        cfg = head.test_cfg
        nms = dict(cfg.get("nms") or {})
        if nms.get("type", "nms") != "nms":
            raise ValueError(f"test_cfg.nms.type={nms.get('type')!r} has no fixed-size export; export with "
                             "test_cfg.nms=dict(type='nms', iou_threshold=0.7) (DETA's default)")
        if cfg.get("nms", "missing") is None:
            raise ValueError("test_cfg.nms=None (plain top-k) is not exported: set test_cfg.nms=dict(type='nms')")
        self.iou_threshold = float(nms.get("iou_threshold", 0.7))
        pairs = model.num_queries * head.num_classes
        eager_pre_topk = int(cfg.get("pre_topk", 10000))
        self.pre_topk = int(pre_topk or min(eager_pre_topk, pairs, MAX_PRE_TOPK))
        if self.pre_topk < min(eager_pre_topk, pairs):
            logger.warning("DETA export keeps %d (query, class) pairs before NMS where the eager model keeps %d: "
                           "detections past the first %d candidates can differ", self.pre_topk,
                           min(eager_pre_topk, pairs), self.pre_topk)
        self.max_dets = int(max_dets)
        self.clip_boxes = bool(cfg.get("clip_boxes", True))
        self.nms_iterations = nms_iterations or min(model.num_queries, self.pre_topk)
        sel = model.query_selection
        self.selection = None if sel is None else dict(
            pre_nms_topk=int(sel["pre_nms_topk"]), nms_iou=float(sel["nms_iou"]),
            iterations=selection_iterations or max(min(sel["pre_nms_topk"], h * w) for h, w in self.level_shapes))
        self.orig_size, self.with_raw = orig_size, with_raw
        self.output_names = list(OUTPUT_NAMES) + (list(RAW_OUTPUT_NAMES) if with_raw else [])

    @property
    def _in_dtype(self):
        return torch.float16 if self.fp16 else torch.float32

    def _features(self, images: Tensor):
        """``extract_feat`` with the tower in its own precision and the neck in float32."""
        feats = self.model.backbone(images.to(self._in_dtype))
        return self.model.neck(tuple(f.float() for f in feats))

    def _padding_masks(self, orig_hw: Tensor):
        """mmdet's ``pre_transformer`` masks for letterboxed images of original ``orig_hw`` (B, 2): per level a
        (B, h, w) bool mask (True on padding), the (B, L, 2) valid ratios and the (B, N, C) sine positions.

        The image mask is built at the fixed input size from comparisons with ``arange`` (no data-dependent
        shape); the level masks are its nearest-neighbour resize, as mmdet resizes them."""
        m = self.model
        rh, rw = letterbox_hw(orig_hw, self.size).unbind(1)
        ys = torch.arange(self.size[0], device=orig_hw.device, dtype=torch.float32)
        xs = torch.arange(self.size[1], device=orig_hw.device, dtype=torch.float32)
        mask = (ys[None, :, None] >= rh[:, None, None]) | (xs[None, None, :] >= rw[:, None, None])
        levels = [F.interpolate(mask.float()[None], size=hw)[0].to(torch.bool) for hw in self.level_shapes]
        valid_ratios = torch.stack([m.get_valid_ratio(lvl) for lvl in levels], 1)
        pos = torch.cat([m.positional_encoding(lvl).flatten(2).transpose(1, 2) for lvl in levels], 1)
        return levels, valid_ratios, pos

    def _pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor], spatial_shapes) -> dict:
        """``DETA.pre_decoder`` (inference branch) with the fixed-size query selection."""
        m = self.model
        c = memory.shape[-1]
        output_memory, output_proposals = m.gen_encoder_output_proposals(memory, memory_mask, spatial_shapes)
        proposal_head = m.decoder.num_layers
        enc_class = m.bbox_head.cls_branches[proposal_head](output_memory)
        enc_coord_unact = m.bbox_head.reg_branches[proposal_head](output_memory) + output_proposals
        scores = enc_class[..., 0]
        if self.selection is None:
            topk = scores.topk(m.num_queries, dim=1).indices
        else:
            boxes = bbox_cxcywh_to_xyxy(enc_coord_unact.float().sigmoid()).clamp(0, 1)
            topk = select_queries_fixed(scores, boxes, tuple(h * w for h, w in self.level_shapes), m.num_queries,
                                        **self.selection)
        topk_coords_unact = torch.gather(enc_coord_unact, 1, topk[..., None].expand(-1, -1, 4))
        pos_trans_out = m.pos_trans_norm(m.pos_trans_fc(m.get_proposal_pos_embed(topk_coords_unact,
                                                                                  num_pos_feats=c // 2)))
        query_pos, query = torch.split(pos_trans_out, c, dim=2)
        topk_feats = torch.gather(output_memory, 1, topk[..., None].expand(-1, -1, c))
        query = query + m.pix_trans_norm(m.pix_trans_fc(topk_feats))
        return dict(query=query, query_pos=query_pos, memory=memory, reference_points=topk_coords_unact.sigmoid())

    def raw(self, images: Tensor, orig_hw: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Final decoder layer: (B, Q, C) class logits and (B, Q, 4) cx, cy, w, h boxes normalised to the image
        (the letterboxed region when ``orig_hw`` (B, 2) is given, else the whole input)."""
        m = self.model
        feats = self._features(images)
        # mmdet's pre_transformer, with the constants baked
        b = feats[0].shape[0]
        flat = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        level_embed = torch.cat([m.level_embed[i].expand(h * w, -1) for i, (h, w) in enumerate(self.level_shapes)])
        if orig_hw is None:  # the whole input is image
            mask, valid_ratios, pos = None, flat.new_ones(b, len(feats), 2), self.sine_pos.expand(b, -1, -1)
        else:
            level_masks, valid_ratios, pos = self._padding_masks(orig_hw)
            mask = torch.cat([lvl.flatten(1) for lvl in level_masks], 1)
        levels = dict(spatial_shapes=self.level_shapes, level_start_index=None, valid_ratios=valid_ratios)
        memory = m.forward_encoder(feat=flat, feat_mask=mask, feat_pos=pos + level_embed, **levels)["memory"]
        decoder_in = dict(self._pre_decoder(memory, mask, self.level_shapes), memory_mask=mask, **levels)
        decoded = m.forward_decoder(**decoder_in)
        if not m.with_box_refine:
            cls_scores, box_preds = m.bbox_head(**decoded)
            return cls_scores[-1], box_preds[-1]
        # With box refinement the decoder's last reference IS the head's last-layer box (same ops on the same
        # tensors); the head would recompute every layer, and onnxscript's optimiser, merging those duplicates,
        # drops the bounds of a Clip (onnxscript 0.7.2: onnx.checker then rejects the graph).
        last = m.decoder.num_layers - 1
        return m.bbox_head.cls_branches[last](decoded["hidden_states"][-1]), decoded["references"][-1]

    def forward(self, images: Tensor, orig_hw: Optional[Tensor] = None):
        if self.orig_size and orig_hw is None:
            raise ValueError("this export was built with orig_size=True: pass orig_hw (B, 2) = (height, width) "
                             "of each original image")
        logits, coords = self.raw(images, orig_hw if self.orig_size else None)
        # pixels of the image the boxes are normalised to (the eager head's img_shape), (B or 1, 1, 4) as w, h, w, h
        hw = letterbox_hw(orig_hw, self.size) if self.orig_size else coords.new_tensor([self.size])
        img_whwh = hw.flip(-1).repeat(1, 2)[:, None, :]
        boxes = bbox_cxcywh_to_xyxy(coords) * img_whwh
        boxes, scores, labels, num = detections_from_queries(
            logits, boxes, max_dets=self.max_dets, pre_topk=self.pre_topk, iou_threshold=self.iou_threshold,
            iterations=self.nms_iterations)
        if self.clip_boxes:  # the eager head clips to img_shape after NMS (test_cfg.clip_boxes, default True)
            boxes = torch.minimum(boxes.clamp(min=0), img_whwh)
        if self.orig_size:
            boxes = letterbox_to_original(boxes, orig_hw, self.size)
        out = (boxes, scores, labels, num)
        return out + (logits, coords) if self.with_raw else out


def letterbox_to_original(boxes: Tensor, orig_hw: Tensor, size: Tuple[int, int]) -> Tensor:
    """Boxes on the letterboxed network input -> pixels of the (h, w) original, clipped to it: mmdet's rescale
    (divide by resized / original per axis), with the letterbox rule of :func:`.mask_rcnn.letterbox_hw`."""
    hw = orig_hw.float()
    boxes = boxes / (letterbox_hw(orig_hw, size) / hw).flip(-1).repeat(1, 2)[:, None, :]
    return clip_boxes(boxes, hw)


def _test_resize_rule(cfg) -> dict:
    """The config's test-time resize, as the metadata states it (the graph is fed letterboxed images)."""
    for t in cfg.get("test_dataloader", {}).get("dataset", {}).get("pipeline", []):
        if t.get("type") in ("Resize", "DETRResize"):
            return {k: (list(v) if isinstance(v, tuple) else v) for k, v in t.items()}
    return {}


def _classes(model, cfg, num_classes: int) -> list:
    meta = getattr(model, "dataset_meta", None) or {}
    classes = meta.get("classes") or cfg.get("classes")
    if classes is None:
        try:
            classes = cfg.test_dataloader.dataset.metainfo.classes
        except AttributeError:
            classes = [f"class_{i}" for i in range(num_classes)]
    return list(classes)


def deta_metadata(ex: DETAExport, cfg) -> dict:
    """What a runtime needs to feed the DETA graph and read its outputs (pe_dense.deploy reads this)."""
    model, k = ex.model, ex.max_dets
    pre = model.data_preprocessor
    mean = [float(v) / 255 for v in pre.mean.flatten().tolist()]
    std = [float(v) / 255 for v in pre.std.flatten().tolist()]
    pad = float(getattr(pre, "pad_value", 0))
    outputs = {"boxes": ["batch", k, 4], "scores": ["batch", k], "labels": ["batch", k], "num_dets": ["batch"]}
    if ex.with_raw:
        outputs.update(query_logits=["batch", model.num_queries, model.bbox_head.num_classes],
                       query_boxes=["batch", model.num_queries, 4])
    return {
        "task": "detection",
        "classes": _classes(model, cfg, model.bbox_head.num_classes),
        "input_size": list(ex.size),
        "dtype": "float16 backbone (LayerNorm and attention in float32), float32 transformer" if ex.fp16
        else "float32",
        "io_dtype": "float32",
        "normalisation": {"scale": 1 / 255, "mean": mean, "std": std, "channels": "RGB", "layout": "NCHW",
                          "formula": "(pixel * scale - mean) / std"},
        # mmdet pads the normalised image with pad_value: in pixel * scale units that is mean + pad * std
        "resize": {"mode": "letterbox", "interpolation": "bilinear",
                   "pad_value": [m + pad * s for m, s in zip(mean, std)], "pad_where": "bottom-right",
                   "rule": "scale min(H/h, W/w), resized side int(side * scale + 0.5) (mmdet Resize keep_ratio)",
                   "padding_seen_as_image": not ex.orig_size, "config_test_resize": _test_resize_rule(cfg)},
        "box_format": "xyxy",
        "box_frame": "original" if ex.orig_size else "input",
        "coordinate_frame": "original image pixels (orig_hw input)" if ex.orig_size
        else "network input pixels (H x W)",
        "score_threshold": 0.0,
        "empty_slot": {"score": 0.0, "label": -1, "box": [0, 0, 0, 0]},
        "outputs": outputs,
        "postprocess": {"pre_topk": ex.pre_topk, "nms_iou": ex.iou_threshold, "max_dets": k,
                        "nms_iterations": ex.nms_iterations, "clip_boxes": ex.clip_boxes,
                        "query_selection": ex.selection, "num_queries": model.num_queries},
        "level_shapes": [list(s) for s in ex.level_shapes],
    }


def export_deta(model, cfg, size, out_dir: str, *, fmt: str = "onnx", batch="dynamic", fp16: bool = False,
                opset: Optional[int] = None, orig_size: bool = False, max_dets: int = 100,
                name: Optional[str] = None, source: Optional[dict] = None, **export_options) -> str:
    """Wrap, export and check a built DETA; returns the artefact path (metadata JSON beside it).

    ``source``: provenance entries added to the metadata (config, weights hash). ``export_options`` go to
    :class:`DETAExport` (``pre_topk``, NMS iterations, ``with_raw``).
    """
    from .artefact import export_artefact

    ex = DETAExport(model, size, max_dets=max_dets, orig_size=orig_size, fp16=fp16, **export_options)
    name = name or f"deta_{ex.size[0]}x{ex.size[1]}_{'fp16' if fp16 else 'fp32'}"
    extra = [("orig_hw", torch.tensor(ex.size, dtype=torch.int64))] if orig_size else []
    return export_artefact(ex, out_dir, name, size=ex.size, output_names=ex.output_names,
                           metadata={**deta_metadata(ex, cfg), **(source or {})}, fmt=fmt, batch=batch,
                           opset=opset or DETA_OPSET, extra_inputs=extra)
