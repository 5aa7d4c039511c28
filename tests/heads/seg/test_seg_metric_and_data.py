"""mIoU with reduce_zero_label and the ignore label, by hand, through our base config's pipeline and metric; bad
label files get named errors."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mmseg")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BASE = os.path.join(ROOT, "configs", "_base_", "seg_probe_ade20k.py")


@pytest.fixture(scope="module")
def base_cfg():
    from mmengine.config import Config
    return Config.fromfile(BASE)


def build_transform(cfg_dict):
    import pe_dense.heads.seg  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmseg.registry import TRANSFORMS
    init_default_scope("mmseg")
    return TRANSFORMS.build(cfg_dict)


def write_pair(tmp_path, img_hw, label, name="a"):
    img_path, seg_path = tmp_path / f"{name}.jpg", tmp_path / f"{name}.png"
    Image.fromarray(np.zeros((*img_hw, 3), np.uint8)).save(img_path)
    if label is not None:
        Image.fromarray(label.astype(np.uint8)).save(seg_path)
    return dict(img_path=str(img_path), seg_map_path=str(seg_path), reduce_zero_label=True, seg_fields=[])


def load(tmp_path, base_cfg, label, img_hw=None, name="a"):
    """The base config's test pipeline (image loading, resize, checked annotations) on one written pair."""
    img_hw = img_hw or label.shape
    results = write_pair(tmp_path, img_hw, label, name)
    for step in base_cfg.test_pipeline[:-1]:
        results = build_transform(dict(step))(results)
    return results


def test_miou_with_reduce_zero_label_and_ignore_label_by_hand(tmp_path, base_cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import METRICS
    init_default_scope("mmseg")
    # ADE-style PNG: 0 = "other" (becomes 255, ignored), 1..3 = classes 0..2
    png = np.array([[0, 1, 1, 2],
                    [0, 1, 2, 2],
                    [3, 3, 3, 2]])
    results = load(tmp_path, base_cfg, png)
    gt = results["gt_seg_map"]
    np.testing.assert_array_equal(gt, [[255, 0, 0, 1], [255, 0, 1, 1], [2, 2, 2, 1]])
    pred = np.array([[2, 0, 1, 1],
                     [0, 0, 0, 1],
                     [2, 2, 1, 1]])
    # by hand over the 10 labelled pixels (the two 255 pixels are ignored whatever is predicted):
    # class 0: gt {(0,1),(0,2),(1,1)}, pred {(0,1),(1,1),(1,2)}            -> I 2, U 4 -> 0.5
    # class 1: gt {(0,3),(1,2),(1,3),(2,3)}, pred {(0,2),(0,3),(1,3),(2,2),(2,3)} -> I 3, U 6 -> 0.5
    # class 2: gt {(2,0),(2,1),(2,2)}, pred {(2,0),(2,1)}                   -> I 2, U 3 -> 2/3
    # mIoU = (0.5 + 0.5 + 2/3) / 3 = 5/9; aAcc = 7/10
    metric = METRICS.build(dict(base_cfg.test_evaluator))
    metric.dataset_meta = dict(classes=("a", "b", "c"))
    sample = dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                  gt_sem_seg=dict(data=torch.from_numpy(gt.astype(np.int64))[None]))
    metric.process({}, [sample])
    out = metric.compute_metrics(metric.results)
    assert out["mIoU"] == pytest.approx(100 * 5 / 9, abs=0.01)  # mmseg rounds to 2 decimals
    assert out["aAcc"] == pytest.approx(70.0, abs=0.01)


def test_absent_class_does_not_count_in_the_mean(base_cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import METRICS
    init_default_scope("mmseg")
    metric = METRICS.build(dict(base_cfg.test_evaluator))
    metric.dataset_meta = dict(classes=("a", "b", "c"))
    gt = torch.tensor([[0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 2]])
    metric.process({}, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    # class 0: I 1, U 2; class 1: I 1, U 2; class 2: never in gt nor (unignored) pred -> NaN, left out
    assert metric.compute_metrics(metric.results)["mIoU"] == pytest.approx(50.0)


def test_missing_label_png_is_named(tmp_path, base_cfg):
    from pe_dense.heads.seg import MissingLabelError
    with pytest.raises(MissingLabelError, match=r"(?s)label PNG .*a\.png of image .*a\.jpg not found.*seg_map_suffix"):
        load(tmp_path, base_cfg, None, img_hw=(4, 4))


def test_label_of_another_size_is_named(tmp_path, base_cfg):
    from pe_dense.heads.seg import LabelSizeMismatchError
    with pytest.raises(LabelSizeMismatchError, match=r"is 5x4 \(WxH\) but its image .* is 6x4"):
        load(tmp_path, base_cfg, np.ones((4, 5)), img_hw=(4, 6))


def test_label_values_out_of_range_are_named(tmp_path, base_cfg):
    from pe_dense.heads.seg import LabelOutOfRangeError
    png = np.ones((4, 4))
    png[0, 0] = 151  # ADE has 150 classes: 151 -> 150 after reduce_zero_label, one too many
    png[0, 1] = 200
    with pytest.raises(LabelOutOfRangeError, match=r"values \[150, 199\] \(2 pixels\).*reduce_zero_label=True"):
        load(tmp_path, base_cfg, png)
    ok = np.full((4, 4), 150)  # the last class and "other" (0 -> 255) are fine
    ok[0] = 0
    assert set(np.unique(load(tmp_path, base_cfg, ok, name="b")["gt_seg_map"])) == {149, 255}


def test_undecodable_label_is_named(tmp_path, base_cfg):
    from pe_dense.heads.seg import MissingLabelError
    results = write_pair(tmp_path, (4, 4), None)
    with open(results["seg_map_path"], "wb") as f:
        f.write(b"not a png")
    with pytest.raises(MissingLabelError, match="not a decodable image"):
        for step in base_cfg.test_pipeline[:-1]:
            results = build_transform(dict(step))(results)
