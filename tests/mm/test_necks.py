"""Pyramid shapes, strides and the backbone/neck contract."""
import pytest
import torch

from pe_dense.mm import DETAPyramid, PEBackbone, SimpleFeaturePyramid, check_pyramid_contract


def _backbone(**kw):
    return PEBackbone("PE-Spatial-T16-512", model_overrides=dict(layers=3), **kw).eval()


def test_simple_feature_pyramid_strides_and_shapes(real_image):
    bb = _backbone()
    neck = SimpleFeaturePyramid(192, 64)
    check_pyramid_contract(bb, neck)
    x = real_image(size=(256, 320))
    outs = neck(bb(x))
    assert neck.strides == (4, 8, 16, 32, 64)
    assert [tuple(o.shape[-2:]) for o in outs] == [(256 // s, 320 // s) for s in neck.strides]
    assert all(o.shape[1] == 64 for o in outs)
    # the max-pool level is a stride-2 subsample of the last level
    torch.testing.assert_close(outs[-1], outs[-2][..., ::2, ::2])


def test_pyramid_reads_a_different_layer_per_level(real_image):
    bb = _backbone(out_indices=(0, 1, 2, -1))
    neck = SimpleFeaturePyramid(192, 32, in_index=[0, 1, 2, 3])
    feats = bb(real_image(size=(128, 128)))
    outs = neck(feats)
    alone = neck.stages[0](feats[0])
    torch.testing.assert_close(outs[0], alone)
    assert not torch.allclose(neck.stages[0](feats[3]), alone)


def test_deta_pyramid_levels(real_image):
    bb = _backbone()
    neck = DETAPyramid(192, 64, num_outs=5, num_groups=8)
    outs = neck(bb(real_image(size=(256, 256))))
    assert neck.strides == (8, 16, 32, 64, 128)
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
    assert neck.fpn1.weight.shape == (192, 96, 2, 2)  # half-width 2x transposed conv, as released


def test_contract_mismatches_raise_with_the_fix(real_image):
    with pytest.raises(ValueError, match="in_channels=192 and input_stride=16"):
        check_pyramid_contract(_backbone(), SimpleFeaturePyramid(384, 64))
    with pytest.raises(ValueError, match="input_stride=16"):
        check_pyramid_contract(_backbone(), SimpleFeaturePyramid(192, 64, input_stride=14))
    with pytest.raises(ValueError, match="expects 384 channels"):
        SimpleFeaturePyramid(384, 64)(_backbone()(real_image(size=(64, 64))))
    with pytest.raises(IndexError, match="out_indices"):
        SimpleFeaturePyramid(192, 64, in_index=[0, 1, 2, 3])(_backbone()(real_image(size=(64, 64))))
