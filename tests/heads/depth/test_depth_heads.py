"""Depth outputs and heads: bins expectation by hand, the linear head's values, DPT from 1 and 4 layers with and
without a cls token."""
import pytest
import torch
from pe_dense.heads.depth import DepthOutput, DPTDepthHead, LinearDepthHead


def test_bins_expectation_by_hand():
    out = DepthOutput(mode="bins", n_bins=4, spacing="linear", min_depth=1.0, max_depth=4.0)
    assert torch.allclose(out.bin_centres, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    logits = torch.tensor([1.0, -5.0, 0.0, 2.0]).view(1, 4, 1, 1)
    # ReLU + 0.1 -> (1.1, 0.1, 0.1, 2.1), sum 3.4; expectation (1.1*1 + 0.1*2 + 0.1*3 + 2.1*4) / 3.4 = 10 / 3.4
    assert out(logits).item() == pytest.approx(10 / 3.4, rel=1e-6)
    assert out(logits).shape == (1, 1, 1, 1)


def test_log_bins_are_uniform_in_log_depth_over_the_range():
    out = DepthOutput(mode="bins", n_bins=4, spacing="log", min_depth=1.0, max_depth=8.0)
    assert torch.allclose(out.bin_centres, torch.tensor([1.0, 2.0, 4.0, 8.0]), rtol=1e-5)
    wide = DepthOutput(mode="bins", n_bins=256, spacing="log", min_depth=1e-3, max_depth=10.0)
    assert wide.bin_centres[0].item() == pytest.approx(1e-3, rel=1e-5)
    assert wide.bin_centres[-1].item() == pytest.approx(10.0, rel=1e-5)  # not DINOv2's 10**10


def test_regression_output_is_relu_plus_min_depth():
    out = DepthOutput(mode="regression", min_depth=0.25)
    x = torch.tensor([-1.0, 0.0, 2.0]).view(1, 1, 1, 3)
    assert torch.allclose(out(x), torch.tensor([0.25, 0.25, 2.25]).view(1, 1, 1, 3))


def test_linear_head_values_and_cls_concat():
    head = LinearDepthHead(in_channels=2, upsample=1, use_bn=False, cls_token="concat",
                           output=dict(mode="regression", min_depth=0.0))
    with torch.no_grad():
        head.conv_depth.weight.copy_(torch.tensor([1.0, -1.0, 2.0, 0.0]).view(1, 4, 1, 1))
        head.conv_depth.bias.fill_(0.5)
    fmap = torch.tensor([[[[3.0, 1.0]], [[1.0, 1.0]]]])  # (1, 2, 1, 2)
    cls = torch.tensor([[0.25, 7.0]])
    out = head(((fmap, cls),))
    # relu(a - b + 2 * cls0 + 0.5): (3 - 1 + 0.5 + 0.5, 1 - 1 + 0.5 + 0.5)
    assert torch.allclose(out, torch.tensor([[[[3.0, 1.0]]]]))
    with pytest.raises(ValueError, match="output_cls_token=True"):
        head((fmap,))


def test_linear_head_bins_upsamples_and_concatenates_layers():
    head = LinearDepthHead(in_channels=8, in_index=(0, 1), upsample=4, output=dict(mode="bins", n_bins=16))
    feats = (torch.randn(2, 8, 3, 5), torch.randn(2, 8, 3, 5))
    out = head(feats)
    assert out.shape == (2, 1, 12, 20)
    assert (out > 1e-3).all() and (out < 10.0).all()
    assert head.conv_depth.in_channels == 16


@pytest.mark.parametrize("n_layers", [1, 4])
@pytest.mark.parametrize("readout", ["project", "ignore"])
def test_dpt_from_one_or_four_layers(n_layers, readout):
    torch.manual_seed(0)
    W = 32
    # bins output: a random regression head can sit entirely on its ReLU's flat side
    head = DPTDepthHead(in_channels=W, channels=16, readout=readout, head_channels=8,
                        output=dict(mode="bins", n_bins=8)).eval()
    maps = [torch.randn(2, W, 3, 5) for _ in range(n_layers)]
    cls = [torch.randn(2, W) for _ in range(n_layers)]
    inputs = tuple(zip(maps, cls)) if readout == "project" else tuple(maps)
    out = head(inputs)
    assert out.shape == (2, 1, 48, 80)  # token grid x 16: strides p/4 .. 2p fused, then x2 twice
    assert torch.isfinite(out).all() and (out >= 1e-3).all()
    # every input layer reaches the output
    for i in range(n_layers):
        changed = [m.clone() for m in maps]
        changed[i] = changed[i] + 1.0
        again = tuple(zip(changed, cls)) if readout == "project" else tuple(changed)
        assert not torch.allclose(head(again), out)


def test_dpt_cls_readout_changes_the_output_and_ignore_does_not():
    torch.manual_seed(0)
    maps = [torch.randn(1, 32, 4, 4)]
    cls_a, cls_b = [torch.randn(1, 32)], [torch.randn(1, 32)]
    project = DPTDepthHead(in_channels=32, channels=16, readout="project", head_channels=8,
                           output=dict(mode="bins", n_bins=8))
    assert not torch.allclose(project(tuple(zip(maps, cls_a))), project(tuple(zip(maps, cls_b))))
    ignore = DPTDepthHead(in_channels=32, channels=16, readout="ignore", head_channels=8)
    assert torch.allclose(ignore(tuple(zip(maps, cls_a))), ignore(tuple(zip(maps, cls_b))))
    with pytest.raises(ValueError, match="readout='ignore'"):
        project(tuple(maps))  # a model without cls token (G) must use readout='ignore'
    with pytest.raises(ValueError, match="1 or 4"):
        ignore(tuple(maps * 2))


def test_dpt_on_pe_backbone_with_and_without_cls_and_odd_grid():
    from pe_dense.mm import PEBackbone
    x = torch.randn(1, 3, 7 * 16, 9 * 16)
    for use_cls, readout in ((True, "project"), (False, "ignore")):
        backbone = PEBackbone("PE-Spatial-T16-512", out_indices=(0, 1, 2, 3), frozen=True,
                              output_cls_token=use_cls, model_overrides=dict(layers=4))
        head = DPTDepthHead(in_channels=192, channels=16, readout=readout, head_channels=8)
        assert head(backbone(x)).shape == (1, 1, 7 * 16, 9 * 16)
