"""DETA assignment (stage 1 and 2) and query selection on hand-made boxes."""
import pytest
import torch
from pe_dense.heads.deta import (
    IoUOneToManyAssigner,
    cap_positives_per_gt,
    select_queries,
    select_queries_one_image,
    stage1_assigner_cfg,
    stage2_assigner_cfg,
)
from pe_dense.heads.deta.query_selection import level_ids_from_shapes

GT_A = [0.0, 0.0, 10.0, 10.0]
GT_B = [50.0, 50.0, 60.0, 60.0]


def _boxes(rows):
    return torch.tensor(rows, dtype=torch.float32)


def _pairs(a):
    return sorted(zip(a.pos_pred_inds.tolist(), a.pos_gt_inds.tolist()))


# IoU with GT_A: 1.0, 0.8, 0.75, 0.72, 0.71 (five positives), 0.5 (ignore band), 0 (negative);
# pred 7 is GT_B's best match at IoU 0.4 (a low-quality match); pred 8 has IoU 0.2 with GT_A (negative).
STAGE1_PREDS = _boxes([
    [0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 7.5], [0, 0, 10, 7.2], [0, 0, 10, 7.1], [0, 0, 10, 5],
    [20, 20, 30, 30], [50, 50, 60, 54], [0, 0, 10, 2]])


def test_stage1_positives_ignores_negatives_and_cap():
    assign = IoUOneToManyAssigner(**stage1_assigner_cfg())
    a = assign(STAGE1_PREDS, _boxes([GT_A, GT_B]), torch.tensor([0, 0]))
    # five predictions pass 0.7 for GT_A; the cap keeps the four with the highest IoU (pred 4 at 0.71 drops);
    # GT_B gets its best prediction although its IoU (0.4) is below 0.7.
    assert _pairs(a) == [(0, 0), (1, 0), (2, 0), (3, 0), (7, 1)]
    negatives = set(a.neg_pred_inds.tolist())
    assert negatives == {6, 8}  # IoU < 0.3; pred 5 (IoU 0.5) is ignored, pred 4 is a dropped positive


def test_stage1_without_cap_keeps_all_positives():
    cfg = stage1_assigner_cfg()
    cfg["max_pos_per_gt"] = None
    a = IoUOneToManyAssigner(**cfg)(STAGE1_PREDS, _boxes([GT_A, GT_B]), torch.tensor([0, 0]))
    assert _pairs(a) == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (7, 1)]


@pytest.mark.parametrize("seed", range(5))
def test_sampling_limits_positives_and_cap_takes_best_iou(seed):
    torch.manual_seed(seed)
    # num=4, positive fraction 0.5: at most 2 of the 6 positives survive sampling. Whatever was drawn, the cap
    # replaces a GT's c sampled positives by its c best-IoU predictions (DETA's sample_topk_per_gt).
    cfg = stage1_assigner_cfg(num=4, pos_fraction=0.5)
    a = IoUOneToManyAssigner(**cfg)(STAGE1_PREDS, _boxes([GT_A, GT_B]), torch.tensor([0, 0]))
    assert 1 <= a.num_pos <= 2
    preds_a = [p for p, g in _pairs(a) if g == 0]
    assert preds_a == [0, 1][:len(preds_a)]
    assert a.neg_pred_inds.numel() == 4 - a.num_pos


def test_stage2_single_threshold_no_ignore_band():
    preds = _boxes([[0, 0, 10, 6.5], [0, 0, 10, 5.5], [50, 50, 60, 52], [80, 80, 90, 90]])  # IoU .65 .55; B .2
    a = IoUOneToManyAssigner(**stage2_assigner_cfg(num=8))(preds, _boxes([GT_A, GT_B]), torch.tensor([3, 5]))
    assert _pairs(a) == [(0, 0), (2, 1)]  # 0.65 >= 0.6; GT_B's best (0.2) is a low-quality positive
    assert set(a.neg_pred_inds.tolist()) == {1, 3}  # 0.55 is a negative at stage 2 (no ignore band)


def test_stage2_positive_fraction():
    preds = _boxes([[0, 0, 10, 10 - 0.1 * i] for i in range(6)] + [[30, 30, 40, 40]] * 2)  # 6 positives
    cfg = stage2_assigner_cfg(num=8, pos_fraction=0.25)
    a = IoUOneToManyAssigner(**cfg)(preds, _boxes([GT_A]), torch.tensor([0]))
    assert a.num_pos == 2  # int(8 * 0.25)
    assert _pairs(a) == [(0, 0), (1, 0)]  # best IoUs after the cap
    assert a.neg_pred_inds.numel() == 2  # only two negatives exist


def test_no_gt_gives_only_negatives():
    a = IoUOneToManyAssigner(**stage2_assigner_cfg(num=4))(STAGE1_PREDS[:4], torch.zeros(0, 4),
                                                             torch.zeros(0, dtype=torch.long))
    assert a.num_pos == 0 and a.neg_pred_inds.numel() == 4


def test_invalid_predictions_never_positive():
    valid = torch.ones(len(STAGE1_PREDS), dtype=torch.bool)
    valid[0] = False
    a = IoUOneToManyAssigner(**stage1_assigner_cfg())(STAGE1_PREDS, _boxes([GT_A]), torch.tensor([0]), valid)
    assert 0 not in a.pos_pred_inds.tolist()
    assert _pairs(a) == [(1, 0), (2, 0), (3, 0), (4, 0)]


def test_cap_can_reuse_a_prediction_for_two_gts():
    # pred 0 is each GT's best: DETA keeps it for both (its box losses then count it twice)
    ious = torch.tensor([[0.9, 0.8, 0.1], [0.95, 0.1, 0.7]])
    preds, gts = cap_positives_per_gt(torch.tensor([1, 2]), torch.tensor([0, 1]), ious, max_per_gt=4)
    assert list(zip(preds.tolist(), gts.tolist())) == [(0, 0), (0, 1)]


def test_sampler_adding_gts_is_refused():
    cfg = stage1_assigner_cfg()
    cfg["sampler"]["add_gt_as_proposals"] = True
    with pytest.raises(ValueError, match="add_gt_as_proposals=False"):
        IoUOneToManyAssigner(**cfg)


# ---------------------------------------------------------------- query selection
def _level_case():
    """Level 0: three near-duplicates (IoU > 0.9) scoring 0.9-0.88, then two distinct boxes; level 1: three."""
    boxes = _boxes([[0, 0, 10, 10], [0, 0, 10, 10.05], [0, 0, 10.05, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                    [0, 0, 10, 10], [60, 60, 70, 70], [80, 80, 90, 90]])
    scores = torch.tensor([0.9, 0.89, 0.88, 0.5, 0.4, 0.7, 0.6, 0.1])
    levels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    return scores, boxes, levels


def test_query_selection_nms_per_level_and_quota():
    scores, boxes, levels = _level_case()
    keep = select_queries_one_image(scores, boxes, levels, num_queries=4, num_levels=2)
    # NMS removes 1 and 2 (duplicates of 0 on level 0), but not 5 (same box on another level); 2 per level.
    assert keep.tolist() == [0, 5, 6, 3]


def test_query_selection_pads_from_best_remaining():
    scores, boxes, levels = _level_case()
    levels[6:] = 0  # level 1 now has one proposal: its quota of 2 cannot be met
    keep = select_queries_one_image(scores, boxes, levels, num_queries=4, num_levels=2)
    # level 0 quota: 0, 6 (0.6); level 1: 5; padding takes the best remaining survivor, 3 (0.5)
    assert sorted(keep.tolist()) == [0, 3, 5, 6]


def test_query_selection_falls_back_to_topk_when_nms_leaves_too_few():
    scores, boxes, levels = _level_case()
    keep = select_queries_one_image(scores, boxes, levels, num_queries=7, num_levels=2)  # 6 survive NMS
    assert keep.tolist() == scores.topk(7).indices.tolist()


def test_query_selection_pre_nms_topk_per_level():
    scores, boxes, levels = _level_case()
    # with one candidate per level before NMS, only 0 (level 0) and 5 (level 1) compete
    keep = select_queries_one_image(scores, boxes, levels, num_queries=2, num_levels=2, pre_nms_topk=1)
    assert keep.tolist() == [0, 5]


def test_query_selection_too_many_queries_is_a_clear_error():
    scores, boxes, levels = _level_case()
    with pytest.raises(ValueError, match="lower num_queries"):
        select_queries_one_image(scores, boxes, levels, num_queries=9, num_levels=2)


def test_batched_selection_and_level_ids():
    shapes = torch.tensor([[2, 2], [1, 3]])
    assert level_ids_from_shapes(shapes).tolist() == [0, 0, 0, 0, 1, 1, 1]
    scores = torch.rand(2, 7)
    boxes = torch.rand(2, 7, 2).repeat(1, 1, 2) + torch.tensor([0, 0, 0.2, 0.2])
    out = select_queries(scores, boxes, shapes, num_queries=4)
    assert out.shape == (2, 4)
    assert all(len(set(row.tolist())) == 4 for row in out)
