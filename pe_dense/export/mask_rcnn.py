"""mmdet Mask R-CNN on a PE backbone as one fixed-shape graph: images in, ``boxes [B,K,4]``, ``scores [B,K]``,
``labels [B,K]`` (int64), ``num_dets [B]`` and ``masks [B,K,28,28]`` (RoI-resolution probabilities) out.

The eager model's data-dependent steps are rewritten at fixed size and checked against it (tests/export):
- RPN: per level the best ``nms_pre`` anchors (top-k), decoded, NMS within the level (mmdet's ``batched_nms``
  over level ids) with :func:`.fixed_nms.nms_keep_sorted`; all levels ranked together, the best ``max_per_img``
  survivors; slots past the survivors are invalid proposals whose detections score 0.
- RoI pooling: mmdet assigns each RoI to one level and pools only there (``nonzero``); here every level pools
  every RoI and the level map selects (4x the pooling, no data-dependent shape). The pooling is torchvision's
  ``roi_align``, equal to mmcv's RoIAlign (tested) and exported as the standard ONNX ``RoiAlign`` (half_pixel),
  which onnxruntime, OpenVINO and TensorRT run natively.
- Class-wise NMS over the best ``rcnn_pre_topk`` (RoI, class) pairs scoring above ``score_thr``. Greedy NMS lets
  no lower-ranked box change a higher-ranked one, so the K kept are exactly the eager ones whenever K survive
  among those candidates.
"""
from __future__ import annotations

import copy
import logging
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from .baked import SizeNotServedError, bake_for_size
from .feature_extractor import to_fp16_with_fp32_islands
from .fixed_nms import first_k_kept, nms_keep_sorted

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("boxes", "scores", "labels", "num_dets", "masks")
# Fixed-point iterations of the in-graph NMS (fixed_nms.nms_keep_sorted): exact for every box whose chain of
# suppressors is shorter than this. Exact everywhere would be one iteration per candidate (1000 per RPN level,
# about 10 s on a CPU, and as many unrolled steps in the graph). Chains on the demo photos are at most 8 long;
# tests/export checks that these defaults give the exact answer there.
RPN_NMS_ITERATIONS = 24
RCNN_NMS_ITERATIONS = 24
# torch 2.14's exporter writes opset 18 natively; its converter down to 17 fails on the NMS reductions. Mask R-CNN
# has no GridSample (the reason the backbone export defaults to 17), so 18 costs nothing.
DETECTOR_OPSET = 18


def letterbox_hw(orig_hw: Tensor, size: Tuple[int, int]) -> Tensor:
    """(B, 2) original (h, w) -> (B, 2) float size after the letterbox resize into ``size`` (pe_dense.deploy's
    and mmdet's ``Resize(keep_ratio=True)`` rule: ``int(side * min(H / h, W / w) + 0.5)``), in exact integer
    arithmetic so the graph and numpy agree."""
    h, w = orig_hw[:, 0].long(), orig_hw[:, 1].long()
    H, W = size
    height_bound = H * w <= W * h  # the scale is H / h
    rh = torch.where(height_bound, torch.full_like(h, H), torch.div(2 * h * W + w, 2 * w, rounding_mode="floor"))
    rw = torch.where(height_bound, torch.div(2 * w * H + h, 2 * h, rounding_mode="floor"), torch.full_like(w, W))
    return torch.stack([rh, rw], 1).float()


def clip_boxes(boxes: Tensor, hw: Tensor) -> Tensor:
    """Clip (B, ..., 4) xyxy boxes to [0, w] x [0, h] per image, ``hw`` (B, 2)."""
    limit = hw.flip(-1).repeat(1, 2).view(hw.shape[0], *([1] * (boxes.dim() - 2)), 4)
    return torch.minimum(boxes.clamp(min=0), limit)


def decode(coder, priors: Tensor, deltas: Tensor, hw: Tensor) -> Tensor:
    """mmdet's ``DeltaXYWHBBoxCoder.decode`` (same function) on (B, N, 4) priors/deltas, clipped per image."""
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox

    b = priors.shape[0]
    boxes = delta2bbox(priors.reshape(-1, 4), deltas.reshape(-1, 4), coder.means, coder.stds, max_shape=None,
                       clip_border=False, add_ctr_clamp=coder.add_ctr_clamp, ctr_clamp=coder.ctr_clamp)
    return clip_boxes(boxes.view(b, -1, 4), hw) if coder.clip_border else boxes.view(b, -1, 4)


def roi_extract(extractor, feats: Sequence[Tensor], boxes: Tensor) -> Tensor:
    """(B, R, 4) boxes -> (B*R, C, s, s) features, pooled on the level mmdet's ``map_roi_levels`` assigns."""
    b, r = boxes.shape[:2]
    batch_idx = torch.arange(b, device=boxes.device, dtype=boxes.dtype)[:, None, None].expand(b, r, 1)
    rois = torch.cat([batch_idx, boxes], -1).reshape(-1, 5)
    levels = extractor.map_roi_levels(rois, len(feats))[:, None, None, None]
    out = None
    for lvl, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
        pooled = roi_align(feat, rois, layer.output_size, layer.spatial_scale, layer.sampling_ratio, layer.aligned)
        out = pooled if out is None else torch.where(levels == lvl, pooled, out)
    return out


def _check_roi_layers(extractor) -> None:
    for layer in extractor.roi_layers:
        if type(layer).__name__ != "RoIAlign" or getattr(layer, "pool_mode", "avg") != "avg":
            raise ValueError(f"RoI layer {layer} has no fixed-size export: use roi_layer=dict(type='RoIAlign', "
                             "aligned=True) with the default pool_mode='avg'")


def _nms_iou(cfg) -> float:
    nms = dict(cfg.get("nms") or {})
    if nms.get("type", "nms") != "nms":
        raise ValueError(f"test_cfg nms type {nms.get('type')!r} has no fixed-size export: use dict(type='nms')")
    return float(nms.get("iou_threshold", 0.5))


class MaskRCNNExport(nn.Module):
    """A built mmdet ``MaskRCNN`` with a ``PEBackbone`` wrapped for export at one (H, W), following its
    ``test_cfg`` (``rpn.nms_pre``, ``rpn.max_per_img``, NMS IoUs, ``rcnn.score_thr``).

    ``forward(images[, orig_hw])``: ``images`` (B, 3, H, W) normalised as the config's data preprocessor does
    (RGB), letterboxed into H x W. Without ``orig_size`` boxes are clipped to and given in the H x W input;
    with it, ``orig_hw`` (B, 2) gives each original (h, w): boxes are clipped to the letterboxed image (as mmdet
    clips to ``img_shape``) and returned in original pixels (as mmdet's ``rescale=True``).

    Args:
        max_dets: K output slots (mmdet: ``rcnn.max_per_img``).
        rcnn_pre_topk: (RoI, class) pairs entering the class-wise NMS.
        rpn_nms_iterations / rcnn_nms_iterations: fixed-point iterations of the in-graph NMS (see module top).
        fp16: the PE tower in float16 with LayerNorm and attention in float32; pyramid and heads stay float32.
    """

    def __init__(self, model: nn.Module, size: Tuple[int, int], max_dets: int = 100, orig_size: bool = False,
                 rcnn_pre_topk: int = 1000, rpn_nms_iterations: int = RPN_NMS_ITERATIONS,
                 rcnn_nms_iterations: int = RCNN_NMS_ITERATIONS, fp16: bool = False):
        super().__init__()
        from pe_dense.mm import PEBackbone

        if not isinstance(model.backbone, PEBackbone):
            raise TypeError(f"MaskRCNNExport bakes a PEBackbone, got {type(model.backbone).__name__}: export a "
                            "config whose backbone is type='PEBackbone'")
        if not getattr(model, "with_mask", False):
            raise ValueError("this detector has no mask head: MaskRCNNExport needs a Mask R-CNN config")
        self.size = tuple(int(s) for s in size)
        coarsest = max(model.neck.strides) if hasattr(model.neck, "strides") else 1
        if self.size[0] % coarsest or self.size[1] % coarsest:
            up = [-(-s // coarsest) * coarsest for s in self.size]
            raise SizeNotServedError(
                f"export size {self.size[0]}x{self.size[1]} is not a multiple of the coarsest pyramid stride "
                f"{coarsest}: its anchors would not tile the image. Export at {up[0]}x{up[1]} (or another multiple "
                f"of {coarsest}) and letterbox images into it")
        model = copy.deepcopy(model).eval()  # the caller's model stays as it was
        self.out_indices = model.backbone.out_indices
        if fp16:
            to_fp16_with_fp32_islands(model.backbone)
        self.backbone = bake_for_size(model.backbone, self.size, copy_model=False)
        self.dtype = torch.float16 if fp16 else torch.float32
        self.neck, self.rpn_head, roi_head = model.neck, model.rpn_head, model.roi_head
        self.bbox_extractor, self.bbox_head = roi_head.bbox_roi_extractor, roi_head.bbox_head
        self.mask_extractor = roi_head.bbox_roi_extractor if roi_head.share_roi_extractor else \
            roi_head.mask_roi_extractor
        self.mask_head = roi_head.mask_head
        for extractor in (self.bbox_extractor, self.mask_extractor):
            _check_roi_layers(extractor)
        if self.bbox_head.custom_cls_channels or self.bbox_head.reg_class_agnostic:
            raise ValueError("bbox heads with custom classification channels or class-agnostic regression are "
                             "not exported: use a softmax, class-wise head (Shared4Conv1FCBBoxHead)")
        self.num_classes = self.bbox_head.num_classes

        rpn, rcnn = model.test_cfg.rpn, model.test_cfg.rcnn
        self.rpn_iou, self.rcnn_iou = _nms_iou(rpn), _nms_iou(rcnn)
        self.min_bbox_size = float(rpn.get("min_bbox_size", -1))
        self.score_thr = float(rcnn.get("score_thr", 0.0))
        self.max_dets, self.orig_size = int(max_dets), orig_size
        self.rpn_nms_iterations, self.rcnn_nms_iterations = int(rpn_nms_iterations), int(rcnn_nms_iterations)
        with torch.no_grad():  # level shapes and anchors are constants of the export size
            feats = self._pyramid(torch.zeros(1, 3, *self.size))
        shapes = [tuple(f.shape[-2:]) for f in feats]
        anchors = self.rpn_head.prior_generator.grid_priors(shapes, device="cpu")
        for lvl, a in enumerate(anchors):
            self.register_buffer(f"anchors_{lvl}", a, persistent=False)
        nms_pre = int(rpn.get("nms_pre", -1))
        self.level_topk = [len(a) if not 0 < nms_pre < len(a) else nms_pre for a in anchors]
        self.num_proposals = min(int(rpn.get("max_per_img", 1000)), sum(self.level_topk))
        self.rcnn_pre_topk = min(int(rcnn_pre_topk), self.num_proposals * self.num_classes)
        with torch.no_grad():
            pooled = self.mask_extractor.roi_layers[0].output_size
            self.mask_size = int(self.mask_head(torch.zeros(1, self.mask_extractor.out_channels, *pooled)).shape[-1])
        if self.rcnn_pre_topk < self.max_dets:
            raise ValueError(f"rcnn_pre_topk={rcnn_pre_topk} is smaller than max_dets={max_dets}: raise it")

    @property
    def output_names(self):
        return list(OUTPUT_NAMES)

    def _pyramid(self, images: Tensor) -> Tuple[Tensor, ...]:
        maps = self.backbone.forward_intermediates(images.to(self.dtype), indices=self.out_indices,
                                                   output_fmt="NCHW")
        return self.neck(tuple(m.float() for m in maps))

    def proposals(self, feats, hw: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, R, 4) proposals sorted by score and (B, R) validity (mmdet's ``RPNHead.predict_by_feat``)."""
        cls_scores, bbox_preds = self.rpn_head(feats)
        b = feats[0].shape[0]
        level_boxes, level_scores, level_keep = [], [], []
        for lvl, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            scores = cls.permute(0, 2, 3, 1).reshape(b, -1).sigmoid()  # (h, w, anchor) order, as mmdet
            deltas = reg.permute(0, 2, 3, 1).reshape(b, -1, 4)
            scores, idx = scores.topk(self.level_topk[lvl], dim=1)
            anchors = getattr(self, f"anchors_{lvl}")[idx]
            deltas = torch.gather(deltas, 1, idx[..., None].expand(-1, -1, 4))
            boxes = decode(self.rpn_head.bbox_coder, anchors, deltas, hw)
            if self.min_bbox_size >= 0:
                wh = boxes[..., 2:] - boxes[..., :2]
                valid = (wh[..., 0] > self.min_bbox_size) & (wh[..., 1] > self.min_bbox_size)
            else:
                valid = torch.ones_like(scores, dtype=torch.bool)
            # NMS only within a level (mmdet: batched_nms over level ids), so one level at a time: the same
            # answer as one NMS over all levels with level groups, with the IoU matrix's off-diagonal blocks
            # (boxes of different levels, which never suppress each other) never computed
            keep = nms_keep_sorted(boxes, None, valid, self.rpn_iou,
                                   min(self.rpn_nms_iterations, idx.shape[1]))
            level_boxes.append(boxes)
            level_scores.append(scores)
            level_keep.append(keep)
        # all levels ranked together, the best num_proposals survivors
        scores, order = torch.cat(level_scores, 1).topk(sum(self.level_topk), dim=1)
        boxes = torch.gather(torch.cat(level_boxes, 1), 1, order[..., None].expand(-1, -1, 4))
        keep = torch.gather(torch.cat(level_keep, 1), 1, order)
        idx, num = first_k_kept(keep, self.num_proposals)
        boxes = torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4))
        return boxes, torch.arange(self.num_proposals, device=idx.device)[None] < num[:, None]

    def detect(self, feats, proposals: Tensor, valid: Tensor, hw: Tensor):
        """Box head + class-wise NMS at K slots (mmdet's ``predict_bbox`` and ``multiclass_nms``)."""
        b, r = proposals.shape[:2]
        c = self.num_classes
        cls_score, bbox_pred = self.bbox_head(roi_extract(self.bbox_extractor, feats, proposals))
        scores = cls_score.softmax(-1)[:, :c].reshape(b, r * c) * valid.repeat_interleave(c, 1)
        boxes = decode(self.bbox_head.bbox_coder, proposals.repeat_interleave(c, 1), bbox_pred.reshape(b, r * c, 4),
                       hw)
        scores, pair = scores.topk(self.rcnn_pre_topk, dim=1)
        labels = pair % c
        cand = torch.gather(boxes, 1, pair[..., None].expand(-1, -1, 4))
        keep = nms_keep_sorted(cand, labels, scores > self.score_thr, self.rcnn_iou,
                               min(self.rcnn_nms_iterations, self.rcnn_pre_topk))
        idx, num = first_k_kept(keep, self.max_dets)
        filled = torch.arange(self.max_dets, device=idx.device)[None] < num[:, None]
        out_boxes = torch.where(filled[..., None], torch.gather(cand, 1, idx[..., None].expand(-1, -1, 4)), 0.0)
        out_scores = torch.where(filled, torch.gather(scores, 1, idx), 0.0)
        out_labels = torch.where(filled, torch.gather(labels, 1, idx), -1)
        return out_boxes, out_scores, out_labels, num, filled

    def masks(self, feats, boxes: Tensor, labels: Tensor, filled: Tensor) -> Tensor:
        """(B, K, M, M) probabilities of each detection's class (mmdet's ``predict_mask`` before pasting)."""
        b, k = boxes.shape[:2]
        logits = self.mask_head(roi_extract(self.mask_extractor, feats, boxes))
        m = logits.shape[-1]
        logits = logits.reshape(b, k, self.num_classes, m, m)
        chosen = torch.gather(logits, 2, labels.clamp(min=0)[..., None, None, None].expand(-1, -1, 1, m, m))
        return torch.where(filled[..., None, None], chosen[:, :, 0].sigmoid(), 0.0)

    def forward(self, images: Tensor, orig_hw: Optional[Tensor] = None):
        b = images.shape[0]
        if self.orig_size:
            if orig_hw is None:
                raise ValueError("this export was built with orig_size=True: pass orig_hw (B, 2) = (height, width) "
                                 "of each original image")
            hw = letterbox_hw(orig_hw, self.size)
        else:
            hw = images.new_tensor(self.size, dtype=torch.float32).expand(b, 2)
        feats = self._pyramid(images)
        proposals, valid = self.proposals(feats, hw)
        feats = feats[:len(self.bbox_extractor.featmap_strides)]
        boxes, scores, labels, num, filled = self.detect(feats, proposals, valid, hw)
        masks = self.masks(feats, boxes, labels, filled)
        if self.orig_size:  # mmdet's rescale: divide by (resized / original) per axis
            boxes = boxes / (hw / orig_hw.float()).flip(-1).repeat(1, 2)[:, None, :]
        return boxes, scores, labels, num, masks


def _classes(cfg, model) -> list:
    meta = getattr(model, "dataset_meta", None) or {}
    classes = meta.get("classes") or cfg.get("classes")
    if classes is None:
        try:
            classes = cfg.test_dataloader.dataset.metainfo.classes
        except AttributeError:
            classes = [f"class_{i}" for i in range(model.roi_head.bbox_head.num_classes)]
    return list(classes)


def detector_metadata(model, cfg, size, *, orig_size: bool, fp16: bool, task: str) -> dict:
    """What a runtime needs to feed a detector graph and read its outputs (pe_dense.deploy reads this)."""
    pre = model.data_preprocessor
    mean = [float(v) / 255 for v in pre.mean.flatten().tolist()]
    std = [float(v) / 255 for v in pre.std.flatten().tolist()]
    pad = float(getattr(pre, "pad_value", 0))
    keep_ratio = any(t.get("keep_ratio", False) for t in cfg.test_dataloader.dataset.pipeline
                     if t.get("type") == "Resize")
    frame = "original image pixels (orig_hw input)" if orig_size else "network input pixels (H x W)"
    return {
        "task": task,
        "classes": _classes(cfg, model),
        "input_size": list(size),
        "dtype": "float16 backbone (LayerNorm and attention in float32), float32 heads" if fp16 else "float32",
        "io_dtype": "float32",
        "normalisation": {"scale": 1 / 255, "mean": mean, "std": std, "channels": "RGB", "layout": "NCHW",
                          "formula": "(pixel * scale - mean) / std"},
        # mmdet pads the normalised image with pad_value: in pixel * scale units that is mean + pad * std
        "resize": {"mode": "letterbox" if keep_ratio else "stretch", "interpolation": "bilinear",
                   "pad_value": [m + pad * s for m, s in zip(mean, std)], "pad_where": "bottom-right",
                   "rule": "scale min(H/h, W/w), resized side int(side * scale + 0.5) (mmdet Resize keep_ratio)"},
        "box_format": "xyxy",
        "box_frame": "original" if orig_size else "input",
        "coordinate_frame": frame,
        "score_threshold": float(model.test_cfg.rcnn.get("score_thr", 0.0)),
        "empty_slot": {"score": 0.0, "label": -1, "box": [0, 0, 0, 0]},
    }


def export_mask_rcnn(model, cfg, size, out_dir: str, *, fmt: str = "onnx", batch="dynamic", fp16: bool = False,
                     opset: Optional[int] = None, orig_size: bool = False, max_dets: int = 100,
                     name: Optional[str] = None, source: Optional[dict] = None, **export_options) -> str:
    """Wrap, export and check a built Mask R-CNN; returns the artefact path (metadata JSON beside it).

    ``source``: provenance entries added to the metadata (config, weights hash). ``export_options`` go to
    :class:`MaskRCNNExport` (``rcnn_pre_topk``, NMS iterations).
    """
    from .artefact import export_artefact

    wrapped = MaskRCNNExport(model, size, max_dets=max_dets, orig_size=orig_size, fp16=fp16, **export_options)
    meta = detector_metadata(model, cfg, wrapped.size, orig_size=orig_size, fp16=fp16, task="instance-segmentation")
    meta.update(outputs={"boxes": ["batch", max_dets, 4], "scores": ["batch", max_dets],
                         "labels": ["batch", max_dets], "num_dets": ["batch"],
                         "masks": ["batch", max_dets, wrapped.mask_size, wrapped.mask_size]},
                mask_format="RoI-resolution probabilities inside each box; paste with pe_dense.deploy.paste_masks",
                rpn_nms_iterations=wrapped.rpn_nms_iterations, rcnn_nms_iterations=wrapped.rcnn_nms_iterations,
                rcnn_pre_topk=wrapped.rcnn_pre_topk, num_proposals=wrapped.num_proposals,
                mask_threshold=float(model.test_cfg.rcnn.get("mask_thr_binary", 0.5)), **(source or {}))
    name = name or f"mask_rcnn_{size[0]}x{size[1]}_{'fp16' if fp16 else 'fp32'}"
    extra = [("orig_hw", torch.tensor([size[0], size[1]], dtype=torch.int64))] if orig_size else []
    return export_artefact(wrapped, out_dir, name, size=wrapped.size, output_names=wrapped.output_names,
                           metadata=meta, fmt=fmt, batch=batch, opset=opset or DETECTOR_OPSET, extra_inputs=extra)


__all__ = ["MaskRCNNExport", "SizeNotServedError", "detector_metadata", "export_mask_rcnn", "letterbox_hw"]
