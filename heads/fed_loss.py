"""Federated sigmoid loss for LVIS (Zhou et al., "Probabilistic two-stage detection", 2021), for mmdet's RoI head.

mmdet 3.3.0 has no federated loss (it has Seesaw and EQL-style losses only), so this adds:

- :func:`fed_loss_classes`: per image, its ground-truth classes plus negatives sampled without replacement with
  probability proportional to ``weight`` (class image-frequency ** 0.5), ``num_fed_classes`` (50) in total, the
  background label counted among them when present (detectron2's rule, tested against its function).
- :func:`federated_sigmoid_loss`: per-class sigmoid BCE, counted only over each RoI's image's sampled classes,
  summed and divided by the number of RoIs (as detectron2's ``FastRCNNOutputLayers`` with ``use_fed_loss``).
- ``SigmoidFederatedLoss`` (MODELS): the classification loss a box head builds from ``loss_cls``. It keeps
  ``num_classes + 1`` logits with the background last, like detectron2's released LVIS heads (1204 logits);
  the background logit gets no gradient and is ignored at inference (scores are per-class sigmoids).
- ``FederatedConvFCBBoxHead`` (MODELS): mmdet's ``ConvFCBBoxHead`` whose classification loss samples the classes
  per image (it sees the RoIs' image indices, which a plain loss module does not).
- ``FedLossClassWeightsHook`` (HOOKS): sets the head's ``fed_loss_cls_weights`` buffer from the training set's
  images-per-class counts before training. The buffer is saved with checkpoints (detectron2 saves it too).

Sampling is per image. detectron2 samples once per batch on each GPU; the released recipe ran one image per GPU
(64 GPUs, batch 64), where the two coincide.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead
from mmdet.registry import HOOKS, MODELS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor, nn


def fed_loss_classes(gt_classes: Tensor, num_fed_classes: int, num_classes: int, weight: Tensor,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """Sorted-unique foreground classes of one image, then sampled negatives: detectron2's ``get_fed_loss_classes``.

    As detectron2 (which trained the released LVIS model), the background label ``num_classes`` counts among the
    ``num_fed_classes`` when any RoI is background: with 3 foreground classes and background present, 46
    negatives are drawn, not 47. The draw is the same too: one ``torch.multinomial`` over ``num_classes + 1``
    weights (background and the ground-truth classes at 0), so equal RNG states give equal classes. Returned:
    foreground classes only (detectron2 also returns the background label, which its loss then ignores).
    Labels < 0 are ignored. Where detectron2 fails (fewer classes of non-zero weight than needed), all of them
    are taken.
    """
    present = torch.unique(gt_classes[(gt_classes >= 0) & (gt_classes <= num_classes)])
    gt = present[present < num_classes]
    need = num_fed_classes - present.numel()  # the background label takes a slot (detectron2)
    if need <= 0:
        return gt
    prob = weight.detach().float().new_zeros(num_classes + 1)
    prob[:num_classes] = weight.detach().float()
    prob = prob.to(gt_classes.device)
    prob[gt] = 0
    need = min(need, int((prob > 0).sum()))
    if need == 0:
        return gt
    neg = torch.multinomial(prob, need, replacement=False, generator=generator)
    return torch.cat([gt, neg])


def federated_sigmoid_loss(cls_score: Tensor, labels: Tensor, class_mask: Tensor,
                           label_weights: Optional[Tensor] = None, avg_factor: Optional[float] = None) -> Tensor:
    """Sigmoid BCE over the first ``K = class_mask.shape[1]`` logits, counted where ``class_mask`` is 1.

    Args:
        cls_score: (N, K) or (N, K + 1) logits (a trailing background logit is ignored).
        labels: (N,) in ``[0, K]``; ``K`` is background (all-zero target).
        class_mask: (N, K) 0/1 weights: which classes count for each RoI.
        label_weights: (N,) per-RoI weights.
        avg_factor: divisor of the sum; defaults to N (detectron2 divides by the number of RoIs).
    """
    n, k = class_mask.shape
    target = F.one_hot(labels.long().clamp(max=k), k + 1)[:, :k].to(cls_score.dtype)
    loss = F.binary_cross_entropy_with_logits(cls_score[:, :k], target, reduction="none")
    loss = loss * class_mask.to(loss.dtype)
    if label_weights is not None:
        loss = loss * label_weights.to(loss.dtype)[:, None]
    return loss.sum() / (max(n, 1) if avg_factor is None else avg_factor)


def class_weights_from_counts(image_counts: Sequence[float], power: float = 0.5) -> Tensor:
    """Sampling weights ``count ** power`` (detectron2's ``get_fed_loss_cls_weights``)."""
    return torch.as_tensor(image_counts, dtype=torch.float32).clamp(min=0) ** power


@MODELS.register_module()
class SigmoidFederatedLoss(nn.Module):
    """Classification loss with per-class sigmoids; pass ``class_mask`` to make it federated.

    Without ``class_mask`` every class counts (detectron2's sigmoid CE without fed loss).
    """

    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes + 1

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """(N, K+1) logits -> (N, K+1) scores: sigmoid per class, 0 in the (unused) background column."""
        scores = cls_score[:, :-1].sigmoid()
        return torch.cat([scores, scores.new_zeros(scores.shape[0], 1)], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """Percent of RoIs classified right: foreground by arg-max class, background by all scores < 0.5."""
        k = cls_score.shape[1] - 1
        probs = cls_score[:, :k].sigmoid()
        fg = labels < k
        right = torch.where(fg, probs.argmax(dim=1) == labels, probs.max(dim=1).values < 0.5)
        return dict(acc=right.float().mean() * 100 if right.numel() else cls_score.new_zeros(()))

    def forward(self, cls_score: Tensor, labels: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None, reduction_override: Optional[str] = None,
                class_mask: Optional[Tensor] = None) -> Tensor:
        if reduction_override not in (None, "mean"):
            raise ValueError(f"SigmoidFederatedLoss only averages; reduction_override={reduction_override!r}")
        k = cls_score.shape[1] - 1
        if class_mask is None:
            class_mask = cls_score.new_ones(cls_score.shape[0], k)
        return self.loss_weight * federated_sigmoid_loss(cls_score, labels, class_mask, weight, avg_factor)


@MODELS.register_module()
class FederatedConvFCBBoxHead(ConvFCBBoxHead):
    """``ConvFCBBoxHead`` (use ``num_shared_convs=4, num_shared_fcs=1`` for ViTDet's 4conv1fc head) with the
    federated sigmoid loss.

    Args:
        use_fed_loss: sample classes per image; ``False`` = sigmoid loss over all classes.
        fed_loss_num_classes: classes per image (GT classes included), 50 in the recipe.
        fed_loss_freq_weight_power: exponent on class frequency for the sampling weights, 0.5 in the recipe
            (used by ``FedLossClassWeightsHook``).
        other args: as ``ConvFCBBoxHead``; ``loss_cls`` defaults to ``SigmoidFederatedLoss``.
    """

    def __init__(self, *args, use_fed_loss: bool = True, fed_loss_num_classes: int = 50,
                 fed_loss_freq_weight_power: float = 0.5, loss_cls: Optional[dict] = None, **kwargs):
        super().__init__(*args, loss_cls=loss_cls or dict(type="SigmoidFederatedLoss"), **kwargs)
        if not isinstance(self.loss_cls, SigmoidFederatedLoss):
            raise TypeError(f"FederatedConvFCBBoxHead needs loss_cls=dict(type='SigmoidFederatedLoss'), got "
                            f"{type(self.loss_cls).__name__}")
        self.use_fed_loss = use_fed_loss
        self.fed_loss_num_classes = fed_loss_num_classes
        self.fed_loss_freq_weight_power = fed_loss_freq_weight_power
        # Uniform until FedLossClassWeightsHook (or a loaded checkpoint) sets class frequencies ** power.
        self.register_buffer("fed_loss_cls_weights", torch.ones(self.num_classes))

    def set_class_image_counts(self, image_counts: Sequence[float]) -> None:
        if len(image_counts) != self.num_classes:
            raise ValueError(f"got {len(image_counts)} class counts for a head of {self.num_classes} classes: "
                             "the dataset's classes and the head's num_classes disagree")
        weights = class_weights_from_counts(image_counts, self.fed_loss_freq_weight_power)
        self.fed_loss_cls_weights.copy_(weights.to(self.fed_loss_cls_weights.device))

    def fed_class_mask(self, labels: Tensor, image_ids: Tensor) -> Tensor:
        """(N, K) 0/1 mask: for each RoI, the classes sampled for its image."""
        mask = labels.new_zeros(labels.shape[0], self.num_classes, dtype=torch.float32)
        for img in torch.unique(image_ids):
            rows = image_ids == img
            classes = fed_loss_classes(labels[rows], self.fed_loss_num_classes, self.num_classes,
                                       self.fed_loss_cls_weights)
            sub = mask[rows]
            sub[:, classes] = 1.0
            mask[rows] = sub
        return mask

    def loss(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor, labels: Tensor, label_weights: Tensor,
             bbox_targets: Tensor, bbox_weights: Tensor, reduction_override: Optional[str] = None) -> dict:
        losses = super().loss(None, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
                              reduction_override=reduction_override)
        if cls_score is not None and cls_score.numel() > 0:
            avg_factor = max(float((label_weights > 0).sum()), 1.0)
            mask = self.fed_class_mask(labels, rois[:, 0].long()) if self.use_fed_loss else None
            losses["loss_cls"] = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor,
                                               reduction_override=reduction_override, class_mask=mask)
            losses.update(self.loss_cls.get_accuracy(cls_score, labels))
        return losses


def _base_dataset(dataset):
    while hasattr(dataset, "dataset"):  # ClassBalancedDataset, RepeatDataset, ...
        dataset = dataset.dataset
    return dataset


def class_image_counts(dataset, num_classes: int) -> List[int]:
    """Images per class in a (possibly wrapped) mmdet dataset, each image counted once per class."""
    base = _base_dataset(dataset)
    counts: Counter = Counter()
    for idx in range(len(base)):
        counts.update(set(int(c) for c in base.get_cat_ids(idx)))
    return [counts.get(c, 0) for c in range(num_classes)]


@HOOKS.register_module()
class FedLossClassWeightsHook(Hook):
    """Before training, set every ``FederatedConvFCBBoxHead``'s sampling weights from the training set."""

    priority = "NORMAL"

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        heads = [m for m in model.modules() if isinstance(m, FederatedConvFCBBoxHead)]
        if not heads:
            return
        counts = class_image_counts(runner.train_dataloader.dataset, heads[0].num_classes)
        for head in heads:
            head.set_class_image_counts(counts)
        print_log(f"federated loss: class weights from {sum(c > 0 for c in counts)}/{len(counts)} classes seen in "
                  f"training (power {heads[0].fed_loss_freq_weight_power})", logger="current", level=logging.INFO)
