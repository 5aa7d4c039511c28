"""Fixed-size NMS and detection selection against DETA's eager post-processing (mmcv NMS) on crafted cases,
and its ONNX export: no data-dependent shapes, same numbers in onnxruntime at B=1 and B=2."""
import numpy as np
import pytest
import torch
from pe_dense.heads.deta.postprocess import nms_over_queries

from pe_dense.export.fixed_nms import detections_from_queries, nms_keep_sorted


def _logit(p):
    return torch.logit(torch.as_tensor(p, dtype=torch.float32))


def _clustered_boxes(b, q, seed=0):
    """Boxes jittered around a few centres, so NMS suppresses a lot and chains occur."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(b, 4, 2, generator=g) * 80
    pick = torch.randint(0, 4, (b, q), generator=g)
    c = torch.gather(centres, 1, pick[..., None].expand(b, q, 2)) + torch.randn(b, q, 2, generator=g) * 3
    wh = 10 + torch.rand(b, q, 2, generator=g) * 10
    return torch.cat([c - wh / 2, c + wh / 2], -1)


def _canonical(boxes, scores, labels):
    """Order by score, then label and box: equal scores have no defined order in either implementation."""
    keys = [boxes[:, j].numpy() for j in (3, 2, 1, 0)] + [labels.numpy(), -scores.numpy()]
    order = torch.from_numpy(np.lexsort(keys))
    return boxes[order], scores[order], labels[order]


def _check_against_eager(logits, boxes, k, pre_topk=1000, iou=0.7, score_thr=0.0):
    got = detections_from_queries(logits, boxes, max_dets=k, pre_topk=pre_topk, iou_threshold=iou,
                                  score_thr=score_thr)
    for i in range(logits.shape[0]):
        eb, es, el = nms_over_queries(logits[i], boxes[i], pre_topk=pre_topk, iou_threshold=iou, max_per_img=k)
        mask = es > score_thr
        eb, es, el = eb[mask], es[mask], el[mask]
        n = int(got[3][i])
        assert n == len(es)
        mine, theirs = _canonical(got[0][i, :n], got[1][i, :n], got[2][i, :n]), _canonical(eb, es, el)
        torch.testing.assert_close(mine[0], theirs[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(mine[1], theirs[1], rtol=0, atol=1e-7)
        assert mine[2].tolist() == theirs[2].tolist()
        assert (got[1][i, n:] == 0).all() and (got[2][i, n:] == -1).all() and (got[0][i, n:] == 0).all()
    return got


def test_more_candidates_than_slots_random_clusters():
    logits = torch.randn(2, 60, 3) * 2
    got = _check_against_eager(logits, _clustered_boxes(2, 60), k=20)
    assert got[3].tolist() == [20, 20]


def test_fewer_survivors_than_slots_and_fewer_candidates_than_slots():
    boxes = torch.tensor([[[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]], dtype=torch.float32)
    logits = _logit([[[0.9], [0.8], [0.3]]])
    got = _check_against_eager(logits, boxes, k=10)  # 3 candidates < 10 slots; the second is suppressed
    assert got[3].tolist() == [2] and got[0].shape == (1, 10, 4)


def test_ties_identical_boxes_and_classwise():
    box = [5.0, 5.0, 25.0, 30.0]
    boxes = torch.tensor([[box, box, box]])
    logits = _logit([[[0.6, 0.6], [0.6, 0.1], [0.6, 0.6]]])  # equal scores, two classes
    got = _check_against_eager(logits, boxes, k=5)
    assert got[3].tolist() == [2] and sorted(got[2][0, :2].tolist()) == [0, 1]  # one per class


def test_nothing_detected_and_zero_area_boxes():
    boxes = torch.tensor([[[3, 3, 3, 3], [3, 3, 3, 3], [0, 0, 4, 4]]], dtype=torch.float32)
    logits = _logit([[[0.5], [0.4], [0.2]]])
    got = _check_against_eager(logits, boxes, k=4)  # zero-area boxes suppress nothing
    assert got[3].tolist() == [3]
    empty = _check_against_eager(logits, boxes, k=4, score_thr=0.95)  # an image with nothing in it
    assert empty[3].tolist() == [0] and (empty[2] == -1).all() and (empty[1] == 0).all()


def test_suppression_chain_needs_the_iterations():
    """a suppresses b; b (suppressed) must not suppress c: greedy keeps a and c. One iteration ("Fast NMS")
    drops c as well, which is why the default iterates to the exact answer."""
    boxes = torch.tensor([[[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]]], dtype=torch.float32)
    valid = torch.ones(1, 3, dtype=torch.bool)
    groups = torch.zeros(1, 3, dtype=torch.int64)
    assert nms_keep_sorted(boxes, groups, valid, 0.5).tolist() == [[True, False, True]]
    assert nms_keep_sorted(boxes, groups, valid, 0.5, iterations=1).tolist() == [[True, False, False]]


class _Selection(torch.nn.Module):
    """Both fixed-size selections in one graph (one export keeps the test short)."""

    def forward(self, logits, boxes):
        from pe_dense.export.fixed_nms import select_queries_fixed

        queries = select_queries_fixed(logits.amax(-1), boxes, (8, 4), 4, pre_nms_topk=6, nms_iou=0.5)
        return (*detections_from_queries(logits, boxes, max_dets=8, pre_topk=16, iou_threshold=0.7), queries)


def test_exports_without_data_dependent_shapes_and_matches_in_onnxruntime(tmp_path):
    import onnx
    import onnxruntime as ort

    from pe_dense.export.graph_checks import graph_problems

    logits, boxes = torch.randn(2, 12, 3) * 2, _clustered_boxes(2, 12, seed=1)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(_Selection(), (logits, boxes), dynamic_shapes=({0: batch}, {0: batch}))
    path = str(tmp_path / "sel.onnx")
    torch.onnx.export(ep, (logits, boxes), path, dynamo=True, opset_version=17, input_names=["logits", "boxes"],
                      output_names=["boxes_out", "scores", "labels", "num_dets", "queries"])
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert graph_problems(model) == []
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for b in (1, 2):
        ref = _Selection()(logits[:b], boxes[:b])
        got = sess.run(None, {"logits": logits[:b].numpy(), "boxes": boxes[:b].numpy()})
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r.numpy(), rtol=0, atol=1e-6)
        assert got[2].dtype == np.int64 and got[3].dtype == np.int64


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_match_eager(seed):
    torch.manual_seed(seed)
    _check_against_eager(torch.randn(1, 40, 5) * 3, _clustered_boxes(1, 40, seed), k=15, pre_topk=100, iou=0.5)


@pytest.mark.parametrize("case", ["quota_and_padding", "fallback", "ties"])
def test_query_selection_matches_eager(case):
    """Against heads.deta's per-image loop (batched_nms, nonzero padding): same indices, same order."""
    from pe_dense.heads.deta.query_selection import select_queries

    from pe_dense.export.fixed_nms import select_queries_fixed

    sizes = (24, 14, 2)  # three levels, flattened positions; the last cannot fill its quota of 3: padding
    n = sum(sizes)
    torch.manual_seed(3)
    boxes = _clustered_boxes(2, n, seed=3)
    scores = torch.randn(2, n)
    nms_iou, q = 0.5, 9
    if case == "fallback":  # everything overlaps: fewer than Q survive NMS, so the plain top-Q is used
        boxes = torch.tensor([0.0, 0, 10, 10]).expand(2, n, 4) + torch.rand(2, n, 1) * 0.1
    if case == "ties":  # each proposal twice (same box, same score): which twin survives NMS is arbitrary
        scores = scores[:, ::2].repeat_interleave(2, 1)
        boxes = boxes[:, ::2].repeat_interleave(2, 1)
    shapes = torch.tensor([[s, 1] for s in sizes])
    ref = select_queries(scores, boxes, shapes, q, pre_nms_topk=10, nms_iou=nms_iou)
    got = select_queries_fixed(scores, boxes, sizes, q, pre_nms_topk=10, nms_iou=nms_iou)
    if case == "ties":  # twins are interchangeable: compare the selected (score, box) sequences
        for i in range(2):
            torch.testing.assert_close(scores[i, got[i]], scores[i, ref[i]], rtol=0, atol=0)
            torch.testing.assert_close(boxes[i, got[i]], boxes[i, ref[i]], rtol=0, atol=0)
    else:
        assert got.tolist() == ref.tolist()
