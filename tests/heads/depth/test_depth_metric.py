"""PEDepthMetric: every metric on a hand-computed case, the TypeError fix, the scaled Eigen crop."""
import math

import pytest
import torch
from mmengine.structures import PixelData
from mmseg.evaluation.metrics import DepthMetric
from mmseg.structures import SegDataSample
from pe_dense.heads.depth import PEDepthMetric, eigen_crop_box, eigen_crop_mask


def _sample(pred, gt):
    s = SegDataSample(metainfo=dict(img_path="x.png"))
    s.pred_depth_map = PixelData(data=torch.as_tensor(pred, dtype=torch.float32)[None])
    s.gt_depth_map = PixelData(data=torch.as_tensor(gt, dtype=torch.float32)[None])
    return s.to_dict()


def _evaluate(metric, pairs):
    metric.process({}, [_sample(p, g) for p, g in pairs])
    return metric.compute_metrics(metric.results)


def test_all_metrics_hand_computed_per_image_then_averaged():
    # image 1 valid pixels gt (1, 2, 4), pred (1, 1, 5); the 0 and NaN ground-truth pixels are invalid
    pred1, gt1 = [[1.0, 1.0, 5.0, 3.0, 7.0]], [[1.0, 2.0, 4.0, 0.0, float("nan")]]
    pred2, gt2 = [[2.0, 3.0]], [[2.0, 3.0]]  # image 2: perfect
    m = _evaluate(PEDepthMetric(), [(pred1, gt1), (pred2, gt2)])
    dl = [0.0, -math.log(2), math.log(1.25)]  # log pred - log gt
    img1 = dict(
        d1=1 / 3,  # ratios 1, 2, 1.25: only 1 < 1.25
        d2=2 / 3,  # < 1.5625
        d3=2 / 3,  # < 1.953125
        abs_rel=(0 + 1 / 2 + 1 / 4) / 3,
        sq_rel=(0 + 1 / 2 + 1 / 4) / 3,
        rmse=math.sqrt(2 / 3),
        rmse_log=math.sqrt(sum(x * x for x in dl) / 3),
        log10=(0 + math.log10(2) + math.log10(1.25)) / 3,
        silog=math.sqrt(sum(x * x for x in dl) / 3 - 0.5 * (sum(dl) / 3) ** 2))
    img2 = dict(d1=1, d2=1, d3=1, abs_rel=0, sq_rel=0, rmse=0, rmse_log=0, log10=0, silog=0)
    assert set(m) == set(img1)
    for k in img1:
        assert m[k] == pytest.approx((img1[k] + img2[k]) / 2, rel=1e-5, abs=1e-6), k


def test_depth_metrics_list_works_where_mmseg_raises_typeerror():
    with pytest.raises(TypeError):
        DepthMetric(depth_metrics=["rmse", "d1"])  # mmseg 1.2.2: isinstance(x, [tuple, list])
    m = _evaluate(PEDepthMetric(depth_metrics=["rmse", "d1"]), [([[1.0, 3.0]], [[1.0, 2.0]])])
    assert m == pytest.approx(dict(rmse=math.sqrt(0.5), d1=0.5))
    with pytest.raises(ValueError, match="unknown depth metrics"):
        PEDepthMetric(depth_metrics=["rmse", "delta1"])


def test_range_is_half_open_and_predictions_clamped():
    # a 10.000 m reading counts (range (1e-3, 10]); a 0 prediction is clamped to 1e-3 instead of log(0) = -inf
    m = _evaluate(PEDepthMetric(depth_metrics=["rmse", "log10"]), [([[10.0, 0.0]], [[10.0, 1.0]])])
    assert m["rmse"] == pytest.approx(math.sqrt((1 - 1e-3) ** 2 / 2), rel=1e-5)
    assert math.isfinite(m["log10"])


def test_eigen_box_scales_with_the_image():
    assert eigen_crop_box(480, 640) == (45, 471, 41, 601)  # mmseg's fixed nyu_crop box
    assert eigen_crop_box(960, 1280) == (90, 942, 82, 1202)
    assert eigen_crop_box(240, 320) == (23, 236, 21, 301)  # 22.5, 235.5, 20.5, 300.5 rounded half up


def test_eigen_crop_at_another_size_differs_from_mmseg_fixed_box():
    h, w = 240, 320
    gt = torch.ones(h, w)
    ours = PEDepthMetric(crop_type="eigen")._get_eval_mask(gt)
    assert torch.equal(ours, eigen_crop_mask(h, w))
    assert ours.sum() == (236 - 23) * (301 - 21)
    mmseg = DepthMetric(crop_type="nyu_crop")._get_eval_mask(gt)
    assert not mmseg[30, 30] and ours[30, 30]  # mmseg's box starts at row 45 whatever the size
    # an error only inside rows 23..44 counts with the scaled box
    pred = gt.clone()
    pred[23:45] = 2.0
    m = _evaluate(PEDepthMetric(depth_metrics=["rmse"], crop_type="eigen"), [(pred, gt)])
    assert m["rmse"] == pytest.approx(math.sqrt(22 / (236 - 23)), rel=1e-5)
