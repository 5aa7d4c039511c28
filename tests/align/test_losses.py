"""Alignment losses against hand-computed values (PE_FACTS section 5)."""
import math

import pytest
import torch

from pe_dense.align.losses import core_loss, feature_distill_loss, loc_loss, pairwise_cosine, sharpen, strip_prefix


def test_core_loss_sign_and_value():
    # token 0: identical directions (cos 1); token 1: orthogonal (cos 0); token 2: opposite (cos -1) -> mean 0.
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]])
    t = torch.tensor([[[5.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]])
    assert core_loss(s, t).item() == pytest.approx(0.0, abs=1e-7)
    # aligned student -> -1 (the minus of #43: minimising the loss *aligns*), opposite -> +1
    assert core_loss(t, t).item() == pytest.approx(-1.0)
    assert core_loss(-t, t).item() == pytest.approx(1.0)
    assert core_loss(t, t, form="one_minus_cos").item() == pytest.approx(0.0, abs=1e-7)
    # 45 degrees: cos = 1/sqrt(2)
    assert core_loss(torch.tensor([[[1.0, 1.0]]]), torch.tensor([[[0.0, 3.0]]])).item() == pytest.approx(
        -1 / math.sqrt(2), rel=1e-6)


def test_core_loss_gradient_descent_aligns():
    s = torch.tensor([[[1.0, 0.2]]], requires_grad=True)
    t = torch.tensor([[[0.0, 1.0]]])
    core_loss(s, t).backward()
    assert s.grad[0, 0, 1] < 0  # minus the gradient increases the y component: towards the teacher


def test_pairwise_cosine_and_sharpen_hand_values():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    c = 1 / math.sqrt(2)
    expected = torch.tensor([[[1, 0, c], [0, 1, c], [c, c, 1]]], dtype=torch.float32)
    torch.testing.assert_close(pairwise_cosine(x), expected)
    torch.testing.assert_close(sharpen(torch.tensor([1.0, 0.0, 0.5])),
                               torch.tensor([1.0, math.exp(-20), math.exp(-10)]))


def test_loc_loss_hand_computed():
    # student tokens: (1,0), (0,1) -> cos matrix [[1,0],[0,1]]
    # SAM tokens: (1,0), (1,1) -> cos [[1,c],[c,1]], sharpened off-diagonal e = exp(20 (c - 1))
    s = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    e = math.exp(20 * (1 / math.sqrt(2) - 1))
    assert loc_loss(s, a).item() == pytest.approx(2 * e ** 2 / 4, rel=1e-5)
    assert loc_loss(s, a, include_diagonal=False).item() == pytest.approx(e ** 2, rel=1e-5)
    # the sharpening is on the SAM side only: t=0 maps every SAM similarity to 1
    assert loc_loss(s, a, temperature=0.0).item() == pytest.approx(2 / 4, rel=1e-6)


def test_loc_loss_precomputed_similarity_equals_features():
    s, a = torch.randn(2, 9, 8), torch.randn(2, 9, 16)
    torch.testing.assert_close(loc_loss(s, pairwise_cosine(a), target_is_similarity=True), loc_loss(s, a))


def test_losses_run_in_fp32_under_bf16_autocast():
    s, a = torch.randn(1, 16, 8), torch.randn(1, 16, 32)
    ref = loc_loss(s, a)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loc_loss(s.bfloat16(), a)
        assert pairwise_cosine(s.bfloat16()).dtype == torch.float32
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=2e-2)


def test_strip_prefix_and_shape_errors():
    x = torch.randn(2, 5, 4)
    assert strip_prefix(x, 1).shape == (2, 4, 4) and strip_prefix(x, 0) is x
    with pytest.raises(ValueError, match="strip cls"):
        core_loss(x, x[:, 1:])
    with pytest.raises(ValueError, match="token grid"):
        loc_loss(x, torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="neg_cos"):
        core_loss(x, x, form="cos")


def test_feature_distill_loss_forms():
    s, t = torch.zeros(1, 2, 2), torch.tensor([[[2.0, 0.0], [0.0, 0.5]]])
    assert feature_distill_loss(s, t, "mse").item() == pytest.approx((4 + 0.25) / 4)
    assert feature_distill_loss(s, t, "smooth_l1").item() == pytest.approx((1.5 + 0.125) / 4)
    assert feature_distill_loss(t, t, "cosine").item() == pytest.approx(0.0, abs=1e-7)
