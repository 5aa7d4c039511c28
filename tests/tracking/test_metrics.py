"""DAVIS J&F: hand-computed cases and the protocol's conventions."""
import math

import numpy as np
import pytest

from pe_dense.tracking import boundary_f, boundary_map, davis_jf, region_jaccard
from pe_dense.tracking.metrics import boundary_tolerance, davis_statistics, format_table, write_tables


def square(shape, top, left, size, label=1):
    m = np.zeros(shape, dtype=np.int64)
    m[top:top + size, left:left + size] = label
    return m


def video(*frames):
    """A 3-frame video whose middle frame is the only scored one."""
    return [frames[0]] + list(frames) + [frames[-1]] if len(frames) == 1 else list(frames)


def test_boundary_map_by_hand():
    m = np.zeros((4, 5), dtype=bool)
    m[1:3, 1:3] = True
    # pixels differing from a right / bottom / bottom-right neighbour (edge replicated)
    expected = np.array([[1, 1, 1, 0, 0],
                         [1, 0, 1, 0, 0],
                         [1, 1, 1, 0, 0],
                         [0, 0, 0, 0, 0]], dtype=bool)
    assert np.array_equal(boundary_map(m), expected)
    # a mask touching the bottom-right corner: the last row/column compare only along the edge
    c = np.zeros((3, 3), dtype=bool)
    c[1:, 1:] = True
    assert np.array_equal(boundary_map(c), np.array([[1, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=bool))
    assert not boundary_map(np.ones((4, 4), dtype=bool)).any()


def test_tolerance_is_ceil_of_diagonal_fraction():
    assert boundary_tolerance((480, 854)) == math.ceil(0.008 * math.hypot(480, 854)) == 8
    assert boundary_tolerance((100, 100)) == 2  # 1.13 -> 2
    assert boundary_tolerance((100, 100), bound_th=3) == 3  # >= 1: pixels


def test_perfect_and_empty_predictions():
    gt = square((60, 80), 10, 20, 25)
    assert region_jaccard(gt > 0, gt > 0) == 1.0 and boundary_f(gt > 0, gt > 0) == 1.0
    empty = np.zeros_like(gt)
    assert region_jaccard(gt > 0, empty > 0) == 0.0 and boundary_f(gt > 0, empty > 0) == 0.0
    assert region_jaccard(empty > 0, gt > 0) == 0.0 and boundary_f(empty > 0, gt > 0) == 0.0
    assert region_jaccard(empty > 0, empty > 0) == 1.0 and boundary_f(empty > 0, empty > 0) == 1.0
    res = davis_jf(video(gt), video(gt))
    assert res.jf == res.j_mean == res.f_mean == 1.0
    res = davis_jf(video(gt), video(gt, empty, gt))
    assert res.jf == 0.0


def test_shifted_square_iou_by_hand():
    gt = square((60, 80), 10, 10, 20)
    pred = square((60, 80), 10, 15, 20)  # 5 px to the right: overlap 20x15, union 20x25
    assert region_jaccard(gt > 0, pred > 0) == pytest.approx(300 / 500)
    pred = square((60, 80), 13, 14, 20)  # overlap 17x16 = 272, union 800 - 272 = 528
    assert region_jaccard(gt > 0, pred > 0) == pytest.approx(272 / 528)


def test_boundary_within_tolerance_counts():
    gt = square((100, 100), 30, 30, 30)  # tolerance ceil(0.008 * 141.4) = 2 px
    assert boundary_f(gt > 0, square((100, 100), 30, 32, 30) > 0) == 1.0  # 2 px off: all matched
    shifted3 = boundary_f(gt > 0, square((100, 100), 30, 33, 30) > 0)
    assert 0 < shifted3 < 1  # 3 px off: the vertical edges no longer match
    assert boundary_f(gt > 0, square((100, 100), 30, 33, 30) > 0, bound_th=3) == 1.0


def test_boundary_f_by_hand():
    """GT: a 4x4 square, whose boundary is the 5x5 ring around its top-left-shifted outline (25 - 9 = 16 px).
    Prediction: the same square plus a far 1-pixel blob (a 2x2 ring, 4 px, nowhere near the GT boundary).
    Precision 16/20, recall 16/16, F = 2 * 0.8 / 1.8."""
    gt = square((40, 40), 5, 5, 4)
    pred = gt.copy()
    pred[30, 30] = 1
    assert boundary_map(gt > 0).sum() == 16
    assert boundary_map(pred > 0).sum() == 20
    assert boundary_f(gt > 0, pred > 0) == pytest.approx(2 * 0.8 / 1.8)
    assert boundary_f(pred > 0, gt > 0) == pytest.approx(2 * 0.8 / 1.8)  # symmetric: P and R swap


def test_void_is_background():
    gt = square((50, 50), 10, 10, 20)
    gt_void = gt.copy()
    gt_void[0:5, :] = 255  # void band
    pred = square((50, 50), 10, 10, 20)
    assert davis_jf(video(gt_void), video(pred)).jf == 1.0
    pred_over_void = pred.copy()
    pred_over_void[0:5, :] = 1  # predicting the object on void is wrong: void counts as background
    assert davis_jf(video(gt_void), video(pred_over_void)).j_mean == pytest.approx(400 / 650)


def test_first_and_last_frames_are_not_scored():
    gt = square((40, 40), 5, 5, 10)
    junk = square((40, 40), 25, 25, 10)
    res = davis_jf([gt, gt, gt, gt], [gt, gt, gt, junk])
    assert res.jf == 1.0
    assert res.objects[0].j_per_frame.shape == (2,)
    res_all = davis_jf([gt, gt, gt, gt], [gt, gt, gt, junk], skip_first_last=False)
    assert res_all.j_mean == pytest.approx(0.75)


def test_objects_come_from_the_first_frame():
    first = square((40, 40), 2, 2, 8, 1) + square((40, 40), 20, 20, 8, 2)
    later = first.copy()
    later[30:35, 2:7] = 3  # a new object id appears later: not scored
    res = davis_jf([first, later, first], [first, first, first])
    assert [o.object_id for o in res.objects] == [1, 2] and res.jf == 1.0
    with pytest.raises(ValueError, match="only 2 objects"):
        davis_jf([first, later, first], [first, later, first])
    # labels 1..max: an id missing from frame 0 is still an object (empty GT: 1.0 if not predicted)
    gap = square((40, 40), 2, 2, 8, 2)
    res = davis_jf([gap, gap, gap], [gap, gap, gap])
    assert [o.object_id for o in res.objects] == [1, 2] and res.jf == 1.0


def test_jf_weights_objects_not_videos():
    one = square((40, 40), 2, 2, 8, 1)
    three = one + square((40, 40), 20, 2, 8, 2) + square((40, 40), 20, 20, 8, 3)
    res = davis_jf({"a": video(one), "b": video(three)}, {"a": video(one), "b": video(np.zeros_like(three))})
    assert res.j_mean == pytest.approx(1 / 4)  # per video it would be (1 + 0) / 2
    seq = {r["Sequence"]: r for r in res.per_sequence()}
    assert seq["a"]["J-Mean"] == 1.0 and seq["b"]["J-Mean"] == 0.0 and seq["b"]["Objects"] == 3
    assert len(res.per_object()) == 4
    assert res.summary()["J&F-Mean"] == pytest.approx(0.25)


def test_multi_object_labels_are_scored_separately():
    gt = square((40, 60), 5, 5, 10, 1) + square((40, 60), 5, 30, 10, 2)
    swapped = square((40, 60), 5, 5, 10, 2) + square((40, 60), 5, 30, 10, 1)
    assert davis_jf(video(gt), video(swapped)).jf == 0.0


def test_statistics_recall_and_decay():
    stats = davis_statistics(np.array([1.0, 1.0, 0.9, 0.6, 0.4, 0.2, 0.0, 0.0]))
    assert stats["mean"] == pytest.approx(0.5125)
    assert stats["recall"] == pytest.approx(4 / 8)
    # quarter edges round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]: first bin frames 0..2, last 5..7
    assert stats["decay"] == pytest.approx(np.mean([1.0, 1.0, 0.9]) - np.mean([0.2, 0.0, 0.0]))


def test_size_mismatch_and_frame_count_errors():
    gt = square((40, 40), 5, 5, 10)
    with pytest.raises(ValueError, match="differ in size"):
        davis_jf(video(gt), video(square((40, 41), 5, 5, 10)))
    with pytest.raises(ValueError, match="predict every frame"):
        davis_jf([gt, gt, gt], [gt, gt])


def test_tables(tmp_path):
    gt = square((40, 40), 5, 5, 10)
    res = davis_jf({"x": video(gt), "y": video(gt)}, {"x": video(gt), "y": video(np.zeros_like(gt))})
    paths = write_tables(res, str(tmp_path))
    text = open(paths["per-sequence_results.csv"]).read().splitlines()
    assert text[0] == "Sequence,Objects,J-Mean,F-Mean,J&F-Mean"
    assert text[1] == "x,1,1.0,1.0,1.0" and text[2] == "y,1,0.0,0.0,0.0"
    assert "J&F-Mean" in open(paths["global_results.csv"]).read()
    assert "x" in format_table(res.per_sequence())
