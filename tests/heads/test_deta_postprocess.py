"""DETA inference: class-wise NMS over queries x classes, quad soft-NMS, and the TTA merge, on hand-made cases."""
import math

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from pe_dense.heads.deta import DETATTAModel, nms_over_queries, soft_nms
from torch import nn


def _logit(p):
    return math.log(p / (1 - p))


BOXES = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9.5], [50, 50, 60, 60]])  # 0 and 1 overlap at IoU 0.95


def test_nms_is_classwise_over_query_class_pairs():
    logits = torch.full((3, 2), _logit(0.01))
    logits[0, 0], logits[1, 0], logits[1, 1], logits[2, 1] = _logit(0.9), _logit(0.8), _logit(0.7), _logit(0.6)
    boxes, scores, labels = nms_over_queries(logits, BOXES, iou_threshold=0.7, max_per_img=3)
    # (q1, class 0) is suppressed by (q0, class 0); (q1, class 1) survives: NMS never crosses classes
    assert labels.tolist() == [0, 1, 1]
    assert torch.allclose(scores, torch.tensor([0.9, 0.7, 0.6]))
    assert torch.equal(boxes, BOXES[[0, 1, 2]])


def test_nms_pre_topk_and_max_per_img():
    logits = torch.full((3, 2), _logit(0.01))
    logits[0, 0], logits[2, 1], logits[2, 0] = _logit(0.9), _logit(0.8), _logit(0.5)
    _, scores, labels = nms_over_queries(logits, BOXES, pre_topk=2, max_per_img=100)
    assert scores.numel() == 2 and labels.tolist() == [0, 1]  # only the two best pairs are considered
    _, scores, _ = nms_over_queries(logits, BOXES, max_per_img=1)
    assert scores.numel() == 1 and scores.item() == pytest.approx(0.9)


def test_nms_threshold_is_strict_upper_bound():
    logits = torch.full((2, 1), _logit(0.9))
    logits[1, 0] = _logit(0.8)
    two = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 6]])  # IoU 0.6
    assert nms_over_queries(logits, two, iou_threshold=0.7)[1].numel() == 2
    assert nms_over_queries(logits, two, iou_threshold=0.5)[1].numel() == 1


def test_quad_soft_nms_decays_instead_of_removing():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 5], [0, 0, 10, 8]])  # IoU .8, .5, .8
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 0, 1])
    keep, new = soft_nms(boxes, scores, labels, iou_threshold=0.7, method="quad", quad_scale=0.5)
    got = dict(zip(keep.tolist(), new.tolist()))
    assert got[0] == pytest.approx(0.9)
    assert got[1] == pytest.approx(0.8 * (1 - 0.8) ** 0.5, rel=1e-4)  # above the threshold: decayed
    assert got[2] == pytest.approx(0.7)  # IoU 0.5 with box 0 and 0.625 with box 1: below 0.7, untouched
    assert got[3] == pytest.approx(0.6)  # another class: untouched
    assert new.tolist() == sorted(new.tolist(), reverse=True)


def test_soft_nms_prunes_low_scores_and_hard_mode_is_nms():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9.99]])
    keep, _ = soft_nms(boxes, torch.tensor([0.9, 0.5]), torch.tensor([0, 0]), method="quad", score_thr=0.1)
    assert keep.tolist() == [0]  # 0.5 * (1 - 0.999)^0.5 = 0.016 < 0.1
    keep, _ = soft_nms(boxes, torch.tensor([0.9, 0.5]), torch.tensor([0, 0]), method="hard")
    assert keep.tolist() == [0]
    with pytest.raises(ValueError, match="choose one of"):
        soft_nms(boxes, torch.tensor([0.9, 0.5]), torch.tensor([0, 0]), method="cubic")


def test_nms_over_queries_with_soft_nms_keeps_suppressed_pairs():
    logits = torch.full((3, 1), _logit(0.01))
    logits[0, 0], logits[1, 0] = _logit(0.9), _logit(0.8)
    _, scores, _ = nms_over_queries(logits, BOXES, pre_topk=2000, max_per_img=None,
                                    soft_nms_cfg=dict(method="quad", quad_scale=0.5, score_thr=0.001))
    # plain NMS would drop query 1 (IoU 0.95 with query 0); soft-NMS keeps it with a decayed score
    assert scores.tolist() == pytest.approx([0.9, 0.8 * 0.05 ** 0.5, 0.01], rel=1e-3)


class _StubDetector(nn.Module):
    def test_step(self, data):
        return data


def _view(boxes, scores, labels, flip, long_side=100):
    s = DetDataSample(metainfo=dict(ori_shape=(100, 200), img_shape=(long_side // 2, long_side), flip=flip,
                                    flip_direction="horizontal" if flip else None))
    s.pred_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(scores),
                                    labels=torch.tensor(labels))
    return s


def test_tta_merge_flips_back_and_soft_nms_merges():
    tta = DETATTAModel(module=_StubDetector(), tta_cfg=ConfigDict(
        nms=dict(type="soft_nms", method="quad", iou_threshold=0.7, quad_scale=0.5), max_per_img=None))
    plain = _view([[10, 10, 50, 60]], [0.9], [2], flip=False)
    flipped = _view([[150, 10, 190, 60]], [0.8], [2], flip=True)  # the same box seen in the flipped image
    merged = tta._merge_single_sample([plain, flipped]).pred_instances
    # flipped back, the second view's box coincides with the first (IoU 1): quad decay sends it to 0, pruned
    assert len(merged) == 1
    assert torch.allclose(merged.bboxes[0], torch.tensor([10.0, 10, 50, 60]))
    assert merged.scores.tolist() == pytest.approx([0.9])


def test_tta_scale_ranges_filter_small_boxes_on_chosen_views():
    tta = DETATTAModel(module=_StubDetector(), tta_cfg=ConfigDict(
        nms=dict(type="mmcv_nms", nms=dict(type="nms", iou_threshold=0.7)), max_per_img=100,
        scale_ranges=[(64, 32, float("inf"))]))
    big_view = _view([[0, 0, 20, 20]], [0.9], [0], flip=False, long_side=100)  # not filtered
    small_view = _view([[50, 50, 70, 70], [0, 50, 60, 100]], [0.8, 0.7], [1, 1], flip=False, long_side=64)
    merged = tta._merge_single_sample([big_view, small_view]).pred_instances
    # on the 64-px view the 20x20 box (area < 32^2) is dropped, the 60x50 box stays
    assert sorted(merged.scores.tolist()) == pytest.approx([0.7, 0.9])


def test_tta_runs_views_one_after_another():
    """TTA's peak memory is the largest view's, not the sum: the detector sees one view's batch per call."""
    calls = []

    class _Recorder(nn.Module):
        def test_step(self, data):
            calls.append(len(data["inputs"]))
            return [_view([[10, 10, 50, 60]], [0.9], [2], flip=False) for _ in data["inputs"]]

    tta = DETATTAModel(module=_Recorder(), tta_cfg=ConfigDict(
        nms=dict(type="soft_nms", method="quad", iou_threshold=0.7, quad_scale=0.5), max_per_img=None))
    views, batch = 8, 2  # e.g. 4 scales x flip, 2 images per batch
    data = dict(inputs=[[torch.zeros(3, 4, 4)] * batch for _ in range(views)],
                data_samples=[[_view([[0, 0, 1, 1]], [0.1], [0], flip=False)] * batch for _ in range(views)])
    merged = tta.test_step(data)
    assert calls == [batch] * views
    assert len(merged) == batch
