"""Slide inference really slides (mmseg 1.2.2 runs whole, #3655), flip averaging, depth padding (mmseg pads with
255), odd input sizes end to end."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.models.segmentors import DepthEstimator
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from pe_dense.heads.depth import DepthDataPreProcessor, SlidingDepthEstimator

import pe_dense.mm  # noqa: F401  (registers PEBackbone)

TINY = dict(
    backbone=dict(type="PEBackbone", model_name="PE-Spatial-T16-512", out_indices=(-1,), frozen=True,
                  model_overrides=dict(layers=1)),
    decode_head=dict(type="LinearDepthHead", in_channels=192, upsample=4, use_bn=False),
    train_cfg=dict())


def _estimator(cls, **test_cfg):
    model = cls(**TINY, test_cfg=ConfigDict(test_cfg))
    calls = []

    def fake_encode_decode(inputs, metas):
        """Records the crop size; returns the call number everywhere (so the average is checkable by hand)."""
        calls.append(tuple(inputs.shape[-2:]))
        return inputs.new_full((inputs.shape[0], 1, *inputs.shape[-2:]), float(len(calls)))

    model.encode_decode = fake_encode_decode
    return model, calls


def _metas(h, w):
    return [dict(ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w), padding_size=[0, 0, 0, 0])]


def test_slide_inference_slides_and_averages_windows():
    cfg = dict(mode="slide", crop_size=(8, 8), stride=(8, 4))
    x = torch.zeros(1, 3, 8, 12)
    ours, calls = _estimator(SlidingDepthEstimator, **cfg)
    depth = ours.inference(x, _metas(8, 12))
    assert calls == [(8, 8), (8, 8)]  # windows at columns 0..7 and 4..11
    expected = torch.tensor([1.0] * 4 + [1.5] * 4 + [2.0] * 4).expand(8, 12)
    assert torch.allclose(depth[0, 0], expected)
    mmseg, mmseg_calls = _estimator(DepthEstimator, **cfg)
    mmseg.inference(x, _metas(8, 12))
    assert mmseg_calls[-1] == (8, 12)  # upstream: the slide result is overwritten by a whole-image run


def test_flip_tta_averages_the_mirrored_run():
    model = SlidingDepthEstimator(**TINY, test_cfg=ConfigDict(mode="whole", flip=True))
    # a "model" that predicts the column index whatever it sees (not mirror-symmetric)
    model.encode_decode = lambda inputs, metas: torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 2, 6)
    depth = model.inference(torch.zeros(1, 3, 2, 6), _metas(2, 6))
    assert torch.allclose(depth, torch.full((1, 1, 2, 6), 2.5))  # (x + (5 - x)) / 2


def _batch():
    samples, inputs = [], []
    for h, w in ((20, 24), (16, 30)):
        s = SegDataSample()
        s.gt_depth_map = PixelData(data=torch.ones(1, h, w))
        samples.append(s)
        inputs.append(torch.zeros(3, h, w, dtype=torch.uint8))
    return dict(inputs=inputs, data_samples=samples)


def test_depth_padding_is_zero_not_255():
    upstream = SegDataPreProcessor(size_divisor=16)(_batch(), training=True)
    assert upstream["data_samples"][0].gt_depth_map.data[0, 31, 31].item() == 255  # the defect: 255 m targets
    out = DepthDataPreProcessor(size_divisor=16)(_batch(), training=True)
    for s, (h, w) in zip(out["data_samples"], ((20, 24), (16, 30))):
        depth = s.gt_depth_map.data[0]
        assert depth.shape == (32, 32)
        assert (depth[:h, :w] == 1).all()
        assert depth.sum().item() == h * w  # everything padded is 0


@pytest.mark.parametrize("head", ["LinearDepthHead", "DPTDepthHead"])
def test_odd_input_size_predicts_at_original_size(head):
    decode_head = dict(type=head, in_channels=192)
    if head == "DPTDepthHead":
        decode_head.update(channels=16, head_channels=8, readout="ignore")
    cfg = dict(type="SlidingDepthEstimator", backbone=TINY["backbone"], decode_head=decode_head,
               data_preprocessor=dict(type="DepthDataPreProcessor", mean=[127.5] * 3, std=[127.5] * 3,
                                      bgr_to_rgb=True, size_divisor=16, test_cfg=dict(size_divisor=16)),
               test_cfg=dict(mode="whole", flip=True))
    with DefaultScope.overwrite_default_scope("mmseg"):
        model = MODELS.build(cfg).eval()
    h, w = 37, 53
    sample = SegDataSample(metainfo=dict(ori_shape=(h, w), img_shape=(h, w)))
    sample.gt_depth_map = PixelData(data=torch.ones(1, h, w))
    with torch.no_grad():
        out = model.test_step(dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)],
                                   data_samples=[sample]))
    assert out[0].pred_depth_map.data.shape == (1, h, w)
    assert torch.isfinite(out[0].pred_depth_map.data).all()
