"""Federated sigmoid loss: class sampling, the loss on hand-computed cases, the head's per-image masks."""
import math

import pytest
import torch
from pe_dense.heads.fed_loss import class_image_counts, class_weights_from_counts
from pe_dense.heads.mask_rcnn import (
    FederatedConvFCBBoxHead,
    SigmoidFederatedLoss,
    fed_loss_classes,
    federated_sigmoid_loss,
)


def bce(x, t):
    return math.log1p(math.exp(x)) - t * x


def test_classes_keep_gt_and_fill_up_to_num_with_background_counted():
    weight = torch.ones(100)
    classes = fed_loss_classes(torch.tensor([7, 7, 3, 100, 100]), 50, 100, weight)  # 100 = background
    # detectron2's rule: {3, 7, background} take 3 of the 50 slots, so 47 negatives (the old code drew 48)
    assert classes.numel() == 49 and classes.unique().numel() == 49
    assert {3, 7} <= set(classes.tolist()) and 100 not in classes.tolist()
    assert classes[:2].tolist() == [3, 7]
    # without background RoIs nothing changes: 2 + 48
    assert fed_loss_classes(torch.tensor([7, 3]), 50, 100, weight).numel() == 50


@pytest.mark.parametrize("labels,seed", [([7, 7, 3, 100, 100], 0), ([100, 100], 1), ([5, 99, 12, 0], 2),
                                         (list(range(0, 100, 2)) + [100], 3), ([42], 4)])
def test_classes_equal_detectron2_on_the_same_generator(labels, seed):
    """Same inputs, same RNG state -> the same classes as detectron2's ``get_fed_loss_classes`` (minus its
    background label, which its loss ignores); for the global RNG (what both heads use) and a passed generator."""
    d2 = pytest.importorskip("detectron2.modeling.roi_heads.fast_rcnn", reason=(
        "detectron2 is not installed: pip install --find-links WHEEL_DIR 'pe_dense[d2]' (see README, detectron2)"))
    k = 100
    weight = torch.rand(k, generator=torch.Generator().manual_seed(seed)) ** 0.5
    gt = torch.tensor(labels)
    torch.manual_seed(seed)
    want = d2.FastRCNNOutputLayers.get_fed_loss_classes(None, gt, 50, k, weight)
    want = want[want < k]
    torch.manual_seed(seed)
    assert torch.equal(fed_loss_classes(gt, 50, k, weight), want)
    assert torch.equal(fed_loss_classes(gt, 50, k, weight, generator=torch.Generator().manual_seed(seed)), want)


def test_classes_many_gt_uses_only_gt():
    gt = torch.arange(60)
    assert fed_loss_classes(gt, 50, 100, torch.ones(100)).tolist() == list(range(60))


def test_classes_never_sample_zero_weight_and_cap_at_available():
    weight = torch.zeros(10)
    weight[[2, 5]] = 1.0
    classes = fed_loss_classes(torch.tensor([0]), 50, 10, weight)
    assert sorted(classes.tolist()) == [0, 2, 5]


def test_sampling_follows_weights():
    weight = torch.tensor([1.0, 4.0, 0.0, 0.0])
    g = torch.Generator().manual_seed(0)
    picks = [fed_loss_classes(torch.tensor([3]), 2, 4, weight, generator=g)[1].item() for _ in range(2000)]
    ratio = picks.count(1) / picks.count(0)
    assert 3.3 < ratio < 4.8  # expected 4


def test_weights_are_frequency_power():
    assert torch.allclose(class_weights_from_counts([4, 9, 0], 0.5), torch.tensor([2.0, 3.0, 0.0]))


def test_loss_hand_computed():
    logits = torch.tensor([[0.0, 2.0, -1.0, 5.0], [1.0, 0.0, 0.0, 0.0]])  # last column: background, ignored
    labels = torch.tensor([1, 3])  # second RoI is background
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    expected = (bce(0, 0) + bce(2, 1) + bce(0, 0) + bce(0, 0)) / 2
    assert federated_sigmoid_loss(logits, labels, mask).item() == pytest.approx(expected, rel=1e-6)
    # per-RoI weights and the divisor
    w = torch.tensor([1.0, 0.0])
    got = federated_sigmoid_loss(logits, labels, mask, label_weights=w, avg_factor=4.0).item()
    assert got == pytest.approx((bce(0, 0) + bce(2, 1)) / 4, rel=1e-6)


def test_loss_module_without_mask_counts_all_classes_and_activation():
    loss = SigmoidFederatedLoss(loss_weight=2.0)
    logits = torch.tensor([[0.0, 0.0, 9.0]])
    assert loss(logits, torch.tensor([0])).item() == pytest.approx(2.0 * (bce(0, 1) + bce(0, 0)), rel=1e-6)
    scores = loss.get_activation(logits)
    assert scores.shape == (1, 3) and scores[0, 2] == 0 and scores[0, 0] == pytest.approx(0.5)
    assert loss.get_cls_channels(2) == 3


def _head(num_classes=100, fed=5):
    return FederatedConvFCBBoxHead(num_shared_convs=0, num_shared_fcs=1, in_channels=4, fc_out_channels=8,
                                   roi_feat_size=2, num_classes=num_classes, fed_loss_num_classes=fed)


def test_head_masks_per_image_and_gradients():
    torch.manual_seed(0)
    head = _head()
    k = head.num_classes
    n = 6
    rois = torch.tensor([[0, 0, 0, 10, 10]] * 3 + [[1, 0, 0, 10, 10]] * 3, dtype=torch.float)
    labels = torch.tensor([4, 9, k, 50, k, k])
    cls_score = torch.randn(n, k + 1, requires_grad=True)
    bbox_pred = torch.randn(n, 4 * k, requires_grad=True)
    losses = head.loss(cls_score, bbox_pred, rois, labels, torch.ones(n), torch.zeros(n, 4), torch.ones(n, 4))
    assert {"loss_cls", "loss_bbox", "acc"} <= set(losses)
    losses["loss_cls"].backward()
    used = cls_score.grad[:, :k] != 0
    assert (cls_score.grad[:, k] == 0).all(), "the background logit must get no gradient"
    img0, img1 = used[:3], used[3:]
    assert (img0 == img0[0]).all() and (img1 == img1[0]).all(), "one class set per image"
    assert img0[0].sum() == 4 and img1[0].sum() == 4  # 5 slots, one taken by the background label (detectron2)
    assert img0[0, [4, 9]].all() and img1[0, 50]
    # without fed loss every class counts
    head.use_fed_loss = False
    cls_score.grad = None
    head.loss(cls_score, bbox_pred, rois, labels, torch.ones(n), torch.zeros(n, 4), torch.ones(n, 4))[
        "loss_cls"].backward()
    assert (cls_score.grad[:, :k] != 0).all()


def test_head_class_counts_and_hook_helper():
    head = _head(num_classes=3)
    head.set_class_image_counts([1, 4, 0])
    assert torch.allclose(head.fed_loss_cls_weights, torch.tensor([1.0, 2.0, 0.0]))
    assert "fed_loss_cls_weights" in head.state_dict()
    with pytest.raises(ValueError, match="num_classes"):
        head.set_class_image_counts([1, 2])

    class Inner:
        def __len__(self):
            return 3

        def get_cat_ids(self, idx):
            return [[0, 0, 2], [2], []][idx]

    class Wrapper:  # like ClassBalancedDataset: repeats, but counts come from the wrapped set
        dataset = Inner()

    assert class_image_counts(Wrapper(), 3) == [1, 0, 2]


def test_head_rejects_other_losses():
    with pytest.raises(TypeError, match="SigmoidFederatedLoss"):
        FederatedConvFCBBoxHead(num_shared_convs=0, num_shared_fcs=1, in_channels=4, fc_out_channels=8,
                                roi_feat_size=2, num_classes=3,
                                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False))
