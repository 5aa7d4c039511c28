"""DETA's bbox head: mmdet's Deformable-DETR head with IoU-based assignment and NMS at inference.

What differs from ``DeformableDETRHead`` (everything else, layers and init included, is inherited):
- losses: stage 1 (encoder proposals vs GT, class-agnostic) and stage 2 (queries vs GT) use
  :class:`IoUOneToManyAssigner` instead of Hungarian matching. Stage 2 assigns once per image, on the
  queries' *initial* reference boxes, and every decoder layer reuses that assignment (public DETA code);
- normalisation: every loss is divided by the number of GT boxes in the batch (averaged over ranks), not by
  the number of positives, because one GT now has up to ``k`` positives (public DETA code);
- inference: class-wise NMS over queries x classes (or PE's soft-NMS), see :mod:`.postprocess`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from mmdet.models.dense_heads import DeformableDETRHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh, get_box_tensor
from mmdet.utils import InstanceList, reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor

from .assignment import IoUAssignment, IoUOneToManyAssigner, stage1_assigner_cfg, stage2_assigner_cfg
from .postprocess import nms_over_queries

DEFAULT_TEST_CFG = dict(pre_topk=10000, nms=dict(type="nms", iou_threshold=0.7), max_per_img=100,
                        clip_boxes=True)


@MODELS.register_module()
class DETAHead(DeformableDETRHead):
    """Head of DETA.

    Args:
        train_cfg: ``dict(stage1=..., stage2=...)``, each ``dict(assigner=, sampler=, max_pos_per_gt=)`` (see
            :func:`.assignment.stage1_assigner_cfg` / :func:`.assignment.stage2_assigner_cfg`; those are the
            defaults). ``stage2.sampler.num=None`` means "the number of queries" (filled in by the detector).
        test_cfg: ``pre_topk`` (10000), ``nms`` (``dict(type='nms', iou_threshold=0.7)``,
            ``dict(type='soft_nms', method='quad', iou_threshold=0.7, quad_scale=0.5, score_thr=0.001)`` or
            ``None`` for a plain top-k as in Deformable DETR), ``max_per_img`` (100; ``None`` keeps all) and
            ``clip_boxes`` (True, mmdet's convention; the DETA release does not clip).
        cls_loss_on_sampled_only: False (DETA): every non-positive query/proposal is background in the focal
            loss. True: only the sampled positives and negatives enter it (the classic RPN/R-CNN reading).
        match_invalid_anchors: False: stage-1 anchors at padded or border positions (those Deformable DETR
            marks invalid) can never be positive. True reproduces DETA, whose invalid anchors decode to a fixed
            box at the bottom-right corner and can match GT there.
    """

    def __init__(self, *args, train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 cls_loss_on_sampled_only: bool = False, match_invalid_anchors: bool = False, **kwargs) -> None:
        super().__init__(*args, train_cfg=None, test_cfg={**DEFAULT_TEST_CFG, **(test_cfg or {})}, **kwargs)
        if not self.loss_cls.use_sigmoid:
            raise ValueError("DETAHead needs a sigmoid classification loss (e.g. FocalLoss with use_sigmoid=True)")
        self.train_cfg = train_cfg
        self.cls_loss_on_sampled_only = cls_loss_on_sampled_only
        self.match_invalid_anchors = match_invalid_anchors
        self.stage1_assigner = self.stage2_assigner = None
        if train_cfg is not None:
            stage1 = train_cfg.get("stage1") or stage1_assigner_cfg()
            stage2 = train_cfg.get("stage2") or stage2_assigner_cfg()
            if stage2["sampler"].get("num") is None:
                raise ValueError("train_cfg.stage2.sampler.num is None: build the head through the DETA detector "
                                 "(which sets it to num_queries) or set it to the number of queries")
            self.stage1_assigner = IoUOneToManyAssigner(**stage1)
            self.stage2_assigner = IoUOneToManyAssigner(**stage2)

    def forward(self, hidden_states: Tensor, references: List[Tensor], **unused) -> tuple:
        """As in Deformable DETR; extra head inputs (encoder outputs, used by the losses) are ignored."""
        return super().forward(hidden_states, references)

    # ------------------------------------------------------------------ losses
    def loss(self, hidden_states: Tensor, references: List[Tensor], enc_outputs_class: Tensor,
             enc_outputs_coord: Tensor, enc_anchors: Tensor, enc_anchor_valid: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        all_cls, all_coords = self(hidden_states, references)
        return self.loss_by_feat(all_cls, all_coords, references[0], enc_outputs_class, enc_outputs_coord,
                                 enc_anchors, enc_anchor_valid, batch_gt_instances, batch_img_metas)

    def loss_by_feat(self, all_layers_cls_scores: Tensor, all_layers_bbox_preds: Tensor, init_references: Tensor,
                     enc_cls_scores: Optional[Tensor], enc_bbox_preds: Optional[Tensor],
                     enc_anchors: Optional[Tensor], enc_anchor_valid: Optional[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Losses of all decoder layers (``loss_*``, ``d{i}.loss_*``) and of the proposals (``enc_loss_*``).

        Boxes are normalised (cx, cy, w, h) relative to each image's ``img_shape``.
        """
        if self.stage1_assigner is None:
            raise RuntimeError("DETAHead.loss needs train_cfg (the model config's train_cfg)")
        device = all_layers_cls_scores.device
        num_gts = sum(len(g) for g in batch_gt_instances)
        avg_factor = reduce_mean(torch.tensor(float(num_gts), device=device)).clamp(min=1).item()
        factors = [self._image_factor(m, device) for m in batch_img_metas]
        gt_xyxy = [get_box_tensor(g.bboxes).float().to(device) / f for g, f in zip(batch_gt_instances, factors)]
        gt_labels = [g.labels.to(device).long() for g in batch_gt_instances]

        stage2 = [self.stage2_assigner(bbox_cxcywh_to_xyxy(ref), gts, labels)
                  for ref, gts, labels in zip(init_references, gt_xyxy, gt_labels)]
        losses: Dict[str, Tensor] = {}
        num_layers = all_layers_cls_scores.shape[0]
        for layer in range(num_layers):
            prefix = "" if layer == num_layers - 1 else f"d{layer}."
            cls_l, box_l, iou_l = self._loss_one_output(all_layers_cls_scores[layer], all_layers_bbox_preds[layer],
                                                        stage2, gt_xyxy, gt_labels, factors, avg_factor)
            losses.update({f"{prefix}loss_cls": cls_l, f"{prefix}loss_bbox": box_l, f"{prefix}loss_iou": iou_l})

        if enc_cls_scores is not None:
            zeros = [torch.zeros_like(lab) for lab in gt_labels]  # proposals are class-agnostic: class 0
            valid = [None] * len(gt_xyxy) if self.match_invalid_anchors or enc_anchor_valid is None \
                else list(enc_anchor_valid)
            stage1 = [self.stage1_assigner(bbox_cxcywh_to_xyxy(anc), gts, z, v)
                      for anc, gts, z, v in zip(enc_anchors, gt_xyxy, zeros, valid)]
            cls_l, box_l, iou_l = self._loss_one_output(enc_cls_scores, enc_bbox_preds, stage1, gt_xyxy, zeros,
                                                        factors, avg_factor)
            losses.update(enc_loss_cls=cls_l, enc_loss_bbox=box_l, enc_loss_iou=iou_l)
        return losses

    @staticmethod
    def _image_factor(img_meta: dict, device) -> Tensor:
        h, w = img_meta["img_shape"][:2]
        return torch.tensor([w, h, w, h], dtype=torch.float32, device=device)

    def _loss_one_output(self, cls_scores: Tensor, bbox_preds: Tensor, assignments: Sequence[IoUAssignment],
                         gt_xyxy: List[Tensor], gt_labels: List[Tensor], factors: List[Tensor],
                         avg_factor: float):
        """Focal, L1 and GIoU losses of one output (B, N, C) / (B, N, 4) under the given assignments."""
        bs, n, c = cls_scores.shape
        labels = cls_scores.new_full((bs, n), self.num_classes, dtype=torch.long)
        weights = cls_scores.new_zeros((bs, n)) if self.cls_loss_on_sampled_only else cls_scores.new_ones((bs, n))
        batch_idx, pred_idx, targets, scale = [], [], [], []
        for b, a in enumerate(assignments):
            labels[b, a.pos_pred_inds] = gt_labels[b][a.pos_gt_inds]
            if self.cls_loss_on_sampled_only:
                weights[b, a.pos_pred_inds] = 1.0
                weights[b, a.neg_pred_inds] = 1.0
            batch_idx.append(torch.full_like(a.pos_pred_inds, b))
            pred_idx.append(a.pos_pred_inds)
            targets.append(bbox_xyxy_to_cxcywh(gt_xyxy[b][a.pos_gt_inds]))
            scale.append(factors[b].expand(a.num_pos, 4))
        loss_cls = self.loss_cls(cls_scores.reshape(-1, c), labels.reshape(-1), weights.reshape(-1),
                                 avg_factor=avg_factor)
        batch_idx, pred_idx = torch.cat(batch_idx), torch.cat(pred_idx)
        targets, scale = torch.cat(targets), torch.cat(scale)
        preds = bbox_preds[batch_idx, pred_idx]
        loss_bbox = self.loss_bbox(preds, targets, avg_factor=avg_factor)
        loss_iou = self.loss_iou(bbox_cxcywh_to_xyxy(preds) * scale, bbox_cxcywh_to_xyxy(targets) * scale,
                                 avg_factor=avg_factor)
        return loss_cls, loss_bbox, loss_iou

    # ------------------------------------------------------------------ inference
    def _predict_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor, img_meta: dict,
                                rescale: bool = True) -> InstanceData:
        """Queries x classes -> detections with NMS (``test_cfg``); boxes in the original image if ``rescale``."""
        cfg = self.test_cfg
        h, w = img_meta["img_shape"][:2]
        boxes = bbox_cxcywh_to_xyxy(bbox_pred) * bbox_pred.new_tensor([w, h, w, h])
        nms_cfg = cfg.get("nms")
        if nms_cfg is None:  # Deformable DETR's plain top-k
            k = min(cfg.get("max_per_img") or cls_score.numel(), cls_score.numel())
            scores, pair = cls_score.sigmoid().flatten().topk(k)
            labels, boxes = pair % self.num_classes, boxes[pair // self.num_classes]
        else:
            nms_cfg = dict(nms_cfg)
            kind = nms_cfg.pop("type", "nms")
            if kind not in ("nms", "soft_nms"):
                raise ValueError(f"test_cfg.nms.type={kind!r}; use 'nms', 'soft_nms' or nms=None")
            iou_thr = nms_cfg.pop("iou_threshold", 0.7)
            boxes, scores, labels = nms_over_queries(
                cls_score, boxes, pre_topk=cfg.get("pre_topk", 10000), iou_threshold=iou_thr,
                max_per_img=cfg.get("max_per_img", 100), soft_nms_cfg=nms_cfg if kind == "soft_nms" else None)
        if cfg.get("clip_boxes", True):
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        if rescale:
            if img_meta.get("scale_factor") is None:
                raise KeyError("rescale=True needs 'scale_factor' in the image metainfo (mmdet's Resize sets it)")
            boxes = boxes / boxes.new_tensor(img_meta["scale_factor"]).repeat((1, 2))
        results = InstanceData()
        results.bboxes, results.scores, results.labels = boxes, scores, labels
        return results
