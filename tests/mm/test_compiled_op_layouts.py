"""Tensors that cross into compiled ops: the layouts and dtypes each op assumes, and that our models meet them.

Audit (mmcv 2.1.0, torchvision 0.29.1, CPU; the CUDA kernels read the same memory layout):
- mmcv ``RoIAlign`` reads features and RoIs as contiguous memory and checks neither: a channels-last or strided
  map, or strided RoIs, are sampled at the wrong places, silently. A dtype mismatch raises; bf16 is not
  implemented (raises). -> our pyramids emit contiguous maps and ``ContiguousRoIExtractor`` guards the consumer.
- mmcv ``nms``/``batched_nms``: any layout is fine (results equal); dtypes other than float32 raise.
- mmcv multi-scale deformable attention: on CPU the PyTorch path (``grid_sample``) accepts any layout; the CUDA
  kernel raises on non-contiguous inputs (checked in its source, ``TORCH_CHECK(value.is_contiguous())``).
- torchvision ``roi_align``/``nms`` make their inputs contiguous themselves: the outside reference below.
"""
import pytest
import torch
import torchvision.ops as tvo
from mmcv.ops import RoIAlign, batched_nms, nms
from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from pe_dense.heads.roi_extractor import ContiguousRoIExtractor

from pe_dense.mm.necks import LayerNorm2d, SimpleFeaturePyramid

ROI_LAYER = dict(type="RoIAlign", output_size=7, sampling_ratio=0, aligned=True)
STRIDES = [4, 8, 16, 32]


def _channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


def _rois():
    """Boxes (batch index, x1, y1, x2, y2) of sizes that mmdet maps to levels 0, 1, 2 and 3 (finest scale 56)."""
    return torch.tensor([[0, 10.0, 12.0, 50.0, 48.0],       # ~38 px  -> level 0 (stride 4)
                         [1, 30.0, 5.0, 180.0, 140.0],     # ~142 px -> level 1 (stride 8)
                         [0, 0.0, 20.0, 250.0, 250.0],     # ~240 px -> level 2 (stride 16)
                         [1, 0.0, 0.0, 500.0, 480.0]])     # ~490 px -> level 3 (stride 32)


def test_layernorm2d_is_contiguous_and_normalises_channels():
    ln = LayerNorm2d(8, eps=1e-6)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 5, 7)
    y = ln(x)
    assert y.is_contiguous() and y.shape == x.shape
    mu, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    want = (x - mu) / torch.sqrt(var + 1e-6) * ln.weight[:, None, None] + ln.bias[:, None, None]
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)


def test_mmcv_roialign_misreads_other_layouts():
    """The hazard itself: mmcv's op equals torchvision on contiguous maps only."""
    feat, rois = torch.randn(2, 16, 20, 24), torch.tensor([[0, 1.5, 2.0, 15.0, 11.0], [1, 3.0, 0.5, 22.0, 19.0]])
    op, want = RoIAlign(7, 1.0, 0, aligned=True), tvo.roi_align(feat, rois, 7, 1.0, 0, aligned=True)
    torch.testing.assert_close(op(feat, rois), want, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(op(_channels_last(feat), rois), want, atol=1e-3)


def test_pyramid_roi_features_equal_those_of_contiguous_maps():
    """RoI features from our pyramid == from the same maps made contiguous == torchvision per level."""
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16, norm="LN").eval()
    with torch.no_grad():
        feats = neck([torch.randn(2, 32, 32, 32)])[:4]  # a 512 px input: strides 4..32
        assert all(f.is_contiguous() for f in feats)
        plain = SingleRoIExtractor(roi_layer=ROI_LAYER, out_channels=16, featmap_strides=STRIDES)
        got = plain(feats, _rois())
        torch.testing.assert_close(got, plain(tuple(f.contiguous() for f in feats), _rois()))
        for i, level in enumerate(range(4)):  # the outside reference, RoI i on its level
            want = tvo.roi_align(feats[level], _rois()[i:i + 1], 7, 1.0 / STRIDES[level], 0, aligned=True)
            torch.testing.assert_close(got[i:i + 1], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_contiguous_extractor_is_safe_for_any_layout(layout):
    feats = tuple(torch.randn(2, 16, 128 // s, 128 // s) for s in STRIDES)
    if layout == "channels_last":
        odd = tuple(_channels_last(f) for f in feats)
    else:
        odd = tuple(torch.stack([f, f], dim=2)[:, :, 0] for f in feats)
    assert not any(f.is_contiguous() for f in odd)
    rois = torch.cat([_rois(), torch.zeros(4, 1)], dim=1)[:, :5]  # strided RoIs too
    safe = ContiguousRoIExtractor(roi_layer=ROI_LAYER, out_channels=16, featmap_strides=STRIDES)
    want = safe(feats, _rois().contiguous())
    torch.testing.assert_close(safe(odd, rois), want)
    for i in range(4):
        ref = tvo.roi_align(feats[i], _rois()[i:i + 1], 7, 1.0 / STRIDES[i], 0, aligned=True)
        torch.testing.assert_close(want[i:i + 1], ref, atol=1e-5, rtol=1e-5)


def test_mask_rcnn_configs_use_the_safe_extractor():
    import os

    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "_base_",
                                       "mask_rcnn_pe.py"))
    assert cfg.model.roi_head.bbox_roi_extractor.type == "ContiguousRoIExtractor"
    assert cfg.model.roi_head.mask_roi_extractor.type == "ContiguousRoIExtractor"


def test_nms_ops_accept_any_layout_and_refuse_other_dtypes():
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(60, 4, generator=g) * 100
    boxes[:, 2:] += boxes[:, :2]
    scores, labels = torch.rand(60, generator=g), torch.randint(0, 3, (60,), generator=g)
    keep = nms(boxes, scores, 0.5)[1]
    assert torch.equal(keep, tvo.nms(boxes, scores, 0.5))
    odd_boxes, odd_scores = boxes.t().contiguous().t(), torch.stack([scores, scores], 1)[:, 0]
    assert not odd_boxes.is_contiguous() and not odd_scores.is_contiguous()
    assert torch.equal(nms(odd_boxes, odd_scores, 0.5)[1], keep)
    cfg = dict(type="nms", iou_threshold=0.5)
    assert torch.equal(batched_nms(odd_boxes, odd_scores, labels, cfg)[1], tvo.batched_nms(boxes, scores, labels, 0.5))
    with pytest.raises(RuntimeError, match="scalar type"):
        nms(boxes.half(), scores.half(), 0.5)


def test_deformable_attention_cpu_path_accepts_any_layout():
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[6, 8], [3, 4]])
    value = torch.randn(2, 60, 2, 8, generator=g)
    loc = torch.rand(2, 10, 2, 2, 4, 2, generator=g)
    weights = torch.rand(2, 10, 2, 2, 4, generator=g).softmax(-1)
    want = multi_scale_deformable_attn_pytorch(value, shapes, loc, weights)
    odd_value = value.transpose(1, 2).contiguous().transpose(1, 2)
    odd_loc = loc.permute(5, 0, 1, 2, 3, 4).contiguous().permute(1, 2, 3, 4, 5, 0)
    assert not odd_value.is_contiguous() and not odd_loc.is_contiguous()
    torch.testing.assert_close(multi_scale_deformable_attn_pytorch(odd_value, shapes, odd_loc, weights), want)
