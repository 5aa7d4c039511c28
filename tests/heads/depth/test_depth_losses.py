"""Depth losses on hand-computed cases; invalid pixels (0, NaN, inf, out of range) never count."""
import math

import pytest
import torch
from pe_dense.heads.depth import DepthGradientLoss, DepthSiLogLoss


def _maps(pred_vals, gt_vals):
    return (torch.tensor(pred_vals, dtype=torch.float32).view(1, 1, 1, -1),
            torch.tensor(gt_vals, dtype=torch.float32).view(1, 1, 1, -1))


def test_silog_matches_hand_value_and_ignores_invalid():
    # valid pixels: g = log(pred / gt) = 0, ln 2, 1; the rest are 0 / NaN / inf / 20 m (> max 10) in the target
    pred, gt = _maps([1.0, 2.0, math.e, 5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 1.0, 0.0, float("nan"), float("inf"), 20.0])
    g = [0.0, math.log(2), 1.0]
    mean = sum(g) / 3
    var_unbiased = sum((x - mean) ** 2 for x in g) / 2
    expected = math.sqrt(var_unbiased + 0.15 * mean ** 2)
    loss = DepthSiLogLoss()(pred, gt)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # lambda 1, population variance: var + mean^2 = mean(g^2), the log RMSE
    loss1 = DepthSiLogLoss(lambda_=1.0, unbiased=False)(pred, gt)
    assert loss1.item() == pytest.approx(math.sqrt(sum(x * x for x in g) / 3), rel=1e-5)
    # predictions at invalid pixels do not matter, and no NaN reaches the gradient
    pred2 = pred.clone()
    pred2[..., 3:] = 123.0
    assert DepthSiLogLoss()(pred2, gt).item() == pytest.approx(loss.item(), rel=1e-6)
    p = pred.clone().requires_grad_(True)
    DepthSiLogLoss()(p, gt).backward()
    assert torch.isfinite(p.grad).all() and (p.grad[..., 3:] == 0).all()


def test_silog_per_image_option_averages_images():
    pred_a, gt_a = _maps([1.0, 2.0, 4.0], [1.0, 1.0, 1.0])
    pred_b, gt_b = _maps([3.0, 3.0, 6.0], [1.0, 1.0, 1.0])
    both_pred, both_gt = torch.cat([pred_a, pred_b]), torch.cat([gt_a, gt_b])
    per_image = DepthSiLogLoss(per_image=True)
    expected = (per_image(pred_a, gt_a) + per_image(pred_b, gt_b)) / 2
    assert per_image(both_pred, both_gt).item() == pytest.approx(expected.item(), rel=1e-6)
    # the default pools the batch (DINOv2), which is a different number here
    assert DepthSiLogLoss()(both_pred, both_gt).item() != pytest.approx(expected.item(), rel=1e-3)


def test_gradient_loss_hand_value():
    # one 3x3 image, gt = 1 so d = log pred; pairs two pixels apart: rows (0, 2) and columns (0, 2)
    d = torch.tensor([[0.0, 1.0, 2.0], [0.5, 0.0, 0.0], [1.0, 3.0, 0.0]])
    pred, gt = d.exp().view(1, 1, 3, 3), torch.ones(1, 1, 3, 3)
    vertical = (d[0] - d[2]).abs().sum()      # |0-1| + |1-3| + |2-0| = 5
    horizontal = (d[:, 0] - d[:, 2]).abs().sum()  # |0-2| + |0.5-0| + |1-0| = 3.5
    loss = DepthGradientLoss(steps=(1,))(pred, gt)
    assert loss.item() == pytest.approx((vertical + horizontal).item() / 9, rel=1e-5)
    assert loss.item() == pytest.approx(8.5 / 9, rel=1e-5)
    # an invalid pixel removes its pairs and its count: gt[0, 0] = NaN drops |0-1| and |0-2|
    gt_nan = gt.clone()
    gt_nan[0, 0, 0, 0] = float("nan")
    assert DepthGradientLoss(steps=(1,))(pred, gt_nan).item() == pytest.approx((8.5 - 1 - 2) / 8, rel=1e-5)


def _dinov2_style_gradient(pred, target):
    """DINOv2's slicing of a (B, 1, H, W) tensor as (H, W): differences along the batch axis."""
    d = torch.log(pred) - torch.log(target)
    return (d[0:-2, :] - d[2:, :]).abs().sum() + (d[:, 0:-2] - d[:, 2:]).abs().sum()


def test_gradient_loss_nonzero_at_batch_2_and_independent_of_batch(real_image):
    torch.manual_seed(0)
    gt = torch.rand(3, 1, 24, 32) * 4 + 0.5
    pred = gt * torch.exp(0.3 * torch.randn(3, 1, 24, 32))
    assert _dinov2_style_gradient(pred[:2], gt[:2]).item() == 0.0  # the defect we fix
    loss = DepthGradientLoss()
    assert loss(pred[:2], gt[:2]).item() > 0.05
    alone = loss.per_image(pred[:1], gt[:1])
    in_pair = loss.per_image(pred[:2], gt[:2])[0]
    last_of_three = loss.per_image(pred[[2, 1, 0]], gt[[2, 1, 0]])[2]
    assert in_pair.item() == pytest.approx(alone.item(), rel=1e-6)
    assert last_of_three.item() == pytest.approx(alone.item(), rel=1e-6)
