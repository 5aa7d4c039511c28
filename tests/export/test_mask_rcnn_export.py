"""Mask R-CNN export: the fixed-shape wrapper against mmdet's eager predict on the demo photos, the exported graph
(onnxruntime, OpenVINO, B=1 and B=2) against the wrapper, the graph walk, and the torch-free runner's outputs.

The default tests share one export (tools/export.py on the shrunk demo config, see _mask_rcnn_export_tiny);
the other formats and --orig-size / --fp16 exports are ``slow``.
"""
import copy
import json

import numpy as np
import onnx
import pytest
import torch
from _mask_rcnn_export_tiny import (
    MAX_DETS,
    SIZE,
    assert_detections_match,
    box_iou,
    cli_artefact,
    demo_photos,
    mmdet_predict,
    stretched_batch,
    tiny_model,
)

from pe_dense.export.mask_rcnn import MaskRCNNExport, letterbox_hw, roi_extract

ORT_TOL = dict(rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def tiny():
    model, cfg = tiny_model()
    return model, cfg, MaskRCNNExport(model, SIZE, max_dets=MAX_DETS)


@pytest.fixture(scope="module")
def photos():
    images = demo_photos()
    return images, stretched_batch(images)


@pytest.fixture(scope="module")
def eager(tiny, photos):
    with torch.no_grad():
        return [t.numpy() for t in tiny[2](photos[1])]


def _slots(out, b):
    n = int(out[3][b])
    return [np.asarray(o[b][:n]) for o in (out[0], out[1], out[2])]


def test_roi_extract_equals_mmdet_single_roi_extractor(tiny):
    """All-levels torchvision roi_align + level select == mmdet's SingleRoIExtractor (mmcv RoIAlign, nonzero)."""
    model = tiny[0]
    torch.manual_seed(1)
    feats = tuple(torch.randn(2, 128, 64 // 2 ** i, 64 // 2 ** i) for i in range(4))
    # boxes on every level (sizes 0.5..490 px), sub-pixel corners, some over the border, one degenerate
    boxes = torch.tensor([[[3.3, 4.1, 13.2, 20.7], [10, 10, 190, 150], [-20, 5, 60.5, 90], [0, 0, 256, 256]],
                          [[50, 50, 50.5, 51], [100.2, 30.7, 180.9, 240.1], [0, 0, 500, 480], [1, 2, 30, 31]]])
    got = roi_extract(model.roi_head.bbox_roi_extractor, feats, boxes)
    rois = torch.cat([torch.arange(2.0).repeat_interleave(4)[:, None], boxes.reshape(-1, 4)], 1)
    assert set(model.roi_head.bbox_roi_extractor.map_roi_levels(rois, 4).tolist()) == {0, 1, 2, 3}
    ref = model.roi_head.bbox_roi_extractor(feats, rois)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("orig, size", [((375, 500), (256, 256)), ((480, 640), (320, 320)), ((500, 375), (256, 384)),
                                        ((101, 333), (320, 320)), ((3, 1000), (64, 96))])
def test_letterbox_size_equals_the_deploy_rule(orig, size):
    """In-graph integer letterbox size == pe_dense.deploy.prepare's int(side * min(H/h, W/w) + 0.5)."""
    s = min(size[0] / orig[0], size[1] / orig[1])
    expected = [int(orig[0] * s + 0.5), int(orig[1] * s + 0.5)]
    assert letterbox_hw(torch.tensor([orig]), size)[0].tolist() == expected


def test_wrapper_equals_mmdet_predict_on_demo_photos(tiny, photos, eager):
    """Same proposals and RoI-head raw outputs as mmdet, and the same final detections, on both real photos."""
    model, _, wrapped = tiny
    x = photos[1]
    ref = mmdet_predict(model, x)
    with torch.no_grad():
        feats = model.extract_feat(x)
        hw = torch.tensor([SIZE] * 2, dtype=torch.float32)
        proposals, valid = wrapped.proposals(feats, hw)
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=dict(img_shape=SIZE)) for _ in range(2)]
        rpn_ref = model.rpn_head.predict(feats, samples, rescale=False)
        for b in range(2):
            n = int(valid[b].sum())
            assert n == len(rpn_ref[b].bboxes)
            torch.testing.assert_close(proposals[b, :n], rpn_ref[b].bboxes, rtol=0, atol=1e-4)
        # raw RoI head outputs for the same proposals
        from mmdet.structures.bbox import bbox2roi
        rois = bbox2roi([p.bboxes for p in rpn_ref])
        raw_ref = model.roi_head._bbox_forward(feats, rois)
        cls, deltas = wrapped.bbox_head(roi_extract(wrapped.bbox_extractor, feats[:4], proposals))
        torch.testing.assert_close(cls, raw_ref["cls_score"], rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(deltas, raw_ref["bbox_pred"], rtol=1e-3, atol=1e-4)
    for b in range(2):
        assert_detections_match(ref[b], *_slots(eager, b))
        assert len(ref[b].scores) == MAX_DETS  # spread random heads: every slot filled, so NMS and top-K matter
        # masks: mmdet pastes into the image; ours are the RoI-resolution probabilities it pastes from
        from pe_dense.deploy import paste_masks
        n = int(eager[3][b])
        pasted = paste_masks(eager[4][b][:n], eager[0][b][:n], SIZE)
        np.testing.assert_array_equal(pasted, ref[b].masks.numpy())


def test_default_nms_iterations_are_exact_on_demo_photos(tiny, photos, monkeypatch):
    """The fixed-point NMS reached its fixed point with the default iteration counts (one more iteration changes
    nothing), and greedy NMS is its only fixed point: the in-graph NMS is exact on both photos."""
    import pe_dense.export.mask_rcnn as mr

    calls = []

    def checked(boxes, groups, valid, thr, iterations):
        keep = mr.nms_keep_sorted.__wrapped__(boxes, groups, valid, thr, iterations)
        calls.append(iterations)
        assert torch.equal(keep, mr.nms_keep_sorted.__wrapped__(boxes, groups, valid, thr, iterations + 1))
        return keep

    checked.__wrapped__ = mr.nms_keep_sorted
    monkeypatch.setattr(mr, "nms_keep_sorted", checked)
    with torch.no_grad():
        tiny[2](photos[1])
    # the RPN runs its NMS per pyramid level, then the class-wise NMS of the box head
    assert calls == [mr.RPN_NMS_ITERATIONS] * len(tiny[2].level_topk) + [mr.RCNN_NMS_ITERATIONS]


def test_empty_image_fills_no_slot(tiny):
    """A blank image with a threshold nothing reaches: num_dets 0, every slot score 0, label -1, zero box/mask;
    mmdet agrees (no instances)."""
    model = copy.deepcopy(tiny[0])
    model.test_cfg.rcnn.score_thr = model.roi_head.test_cfg.score_thr = 0.9999
    x = torch.zeros(1, 3, *SIZE)
    with torch.no_grad():
        boxes, scores, labels, num, masks = MaskRCNNExport(model, SIZE, max_dets=MAX_DETS)(x)
    assert len(mmdet_predict(model, x)[0].scores) == 0
    assert num.tolist() == [0] and not scores.any() and (labels == -1).all() and not boxes.any() and not masks.any()


def test_size_not_served_is_refused(tiny):
    from pe_dense.export.baked import SizeNotServedError

    with pytest.raises(SizeNotServedError, match="coarsest pyramid stride 64.*Export at 320x256"):
        MaskRCNNExport(tiny[0], (272, 256))


# ---------------------------------------------------------------------------------------- the exported graph
def test_graph_is_clean_and_carries_its_metadata():
    from pe_dense.export.artefact import load_metadata
    from pe_dense.export.graph_checks import graph_problems

    path, _ = cli_artefact()
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    assert graph_problems(model, dynamic_batch=True) == []
    ops = {n.op_type for n in model.graph.node}
    assert "RoiAlign" in ops and not ops & {"NonZero", "NonMaxSuppression", "If", "Loop"}
    roi = next(n for n in model.graph.node if n.op_type == "RoiAlign")
    assert {a.name: a.s for a in roi.attribute}["coordinate_transformation_mode"] == b"half_pixel"
    meta = load_metadata(path)
    assert meta == json.loads(open(path[:-5] + ".json").read())
    assert meta["classes"][:2] == ["bottle", "chair"] and len(meta["classes"]) == 12
    assert meta["output_names"] == ["boxes", "scores", "labels", "num_dets", "masks"]
    assert meta["resize"]["mode"] == "letterbox" and meta["resize"]["pad_value"] == [0.5] * 3
    assert meta["box_frame"] == "input" and meta["opset"] == 18 and meta["outputs"]["masks"][1:] == [MAX_DETS, 28, 28]


@pytest.mark.parametrize("batch", [1, 2])
def test_onnxruntime_matches_eager_and_mmdet(photos, eager, tiny, batch):
    import onnxruntime as ort

    path, _ = cli_artefact()
    x = photos[1][:batch]
    out = ort.InferenceSession(path).run(None, {"images": x.numpy()})
    _check_against(out, eager, tiny[0], x)


def test_openvino_matches_eager_and_mmdet(photos, eager, tiny):
    import openvino as ov

    path, _ = cli_artefact()
    compiled = ov.Core().compile_model(ov.convert_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for batch in (1, 2):
        x = photos[1][:batch]
        res = compiled({"images": x.numpy()})
        _check_against([res[o] for o in compiled.outputs], eager, tiny[0], x)


def _check_against(out, eager, model, x):
    ref = mmdet_predict(model, x)
    for b in range(x.shape[0]):
        assert int(out[3][b]) == int(eager[3][b])
        np.testing.assert_array_equal(out[2][b], eager[2][b])
        for got, want in zip((out[0], out[1], out[4]), (eager[0], eager[1], eager[4])):
            np.testing.assert_allclose(got[b], want[b], **ORT_TOL)
        assert_detections_match(ref[b], *_slots(out, b))


def test_runner_returns_original_pixels_and_pasted_masks(photos, eager):
    """pe_dense.deploy on the real photos: stretched back to each original, masks pasted there, drawn."""
    from pe_dense.deploy import DeployedModel, paste_masks
    from pe_dense.deploy.preprocess import Transform

    path, _ = cli_artefact()
    model = DeployedModel(path, threads=1)
    model.meta = dict(model.meta, resize=dict(model.meta["resize"], mode="stretch"))  # as the eager batch
    images = photos[0]
    results = model(images)
    for b, (img, res) in enumerate(zip(images, results)):
        h, w = img.shape[:2]
        assert res["transform"] == Transform((h, w), SIZE, (SIZE[0] / h, SIZE[1] / w))
        n = int(eager[3][b])
        want = eager[0][b][:n] / np.array([SIZE[1] / w, SIZE[0] / h] * 2, np.float32)
        np.testing.assert_allclose(res["boxes"], want, rtol=1e-3, atol=0.05)  # numpy vs torch resize: ~1e-5 input
        assert res["masks"].shape == (n, h, w) and res["masks"].dtype == bool
        same = paste_masks(res["roi_masks"], res["boxes"], (h, w))
        np.testing.assert_array_equal(res["masks"], same)
        drawn = model.draw(img, res, score_thr=0.0)
        assert drawn.shape == img.shape and (drawn != img).any()


# --------------------------------------------------------------------------------------------- slow variants
@pytest.mark.slow
def test_orig_size_export_equals_mmdet_rescale(tmp_path, tiny, photos):
    """--orig-size: letterboxed photos, boxes in original pixels == mmdet predict(rescale=True) with the same
    img_shape, and masks pasted with those boxes == mmdet's pasted masks (ORT and OpenVINO)."""
    import onnxruntime as ort
    import openvino as ov

    from pe_dense.deploy import paste_masks
    from pe_dense.export.mask_rcnn import export_mask_rcnn

    model, cfg, _ = tiny
    path = export_mask_rcnn(model, cfg, SIZE, str(tmp_path), orig_size=True, max_dets=MAX_DETS)
    images = photos[0]
    orig = torch.tensor([img.shape[:2] for img in images])
    resized = letterbox_hw(orig, SIZE).long()
    from pe_dense.data.images import preprocess
    x = torch.zeros(2, 3, *SIZE)  # letterbox: resize into the top-left, pad with the mean (0 after normalising)
    for b, img in enumerate(images):
        rh, rw = resized[b].tolist()
        x[b, :, :rh, :rw] = preprocess(img, (rh, rw))[0]
    ref = mmdet_predict(model, x, img_shapes=resized.tolist(), ori_shapes=orig.tolist(), rescale=True)
    compiled = ov.Core().compile_model(ov.convert_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feeds = {"images": x.numpy(), "orig_hw": orig.numpy()}
    for out in (ort.InferenceSession(path).run(None, feeds), list(compiled(feeds).values())):
        for b in range(2):
            assert_detections_match(ref[b], *_slots(out, b))
            n = int(out[3][b])
            pasted = paste_masks(out[4][b][:n], out[0][b][:n], tuple(orig[b].tolist()))
            inter = (pasted & ref[b].masks.numpy()).sum()
            assert inter / max((pasted | ref[b].masks.numpy()).sum(), 1) > 0.99


@pytest.mark.slow
def test_fp16_export_parity(tmp_path, tiny, photos, eager):
    """--fp16 (backbone fp16, LayerNorm/attention fp32, heads fp32): ORT within 1e-2 of fp32 eager scores; the
    top detections keep their class and box."""
    import onnxruntime as ort

    from pe_dense.export.mask_rcnn import export_mask_rcnn

    model, cfg, _ = tiny
    path = export_mask_rcnn(model, cfg, SIZE, str(tmp_path), fp16=True, batch=2, max_dets=MAX_DETS)
    out = ort.InferenceSession(path).run(None, {"images": photos[1].numpy()})
    for b in range(2):
        np.testing.assert_allclose(out[1][b][:5], eager[1][b][:5], atol=1e-2)
        np.testing.assert_array_equal(out[2][b][:5], eager[2][b][:5])
        assert (box_iou(out[0][b][:5], eager[0][b][:5]).diagonal() > 0.95).all()


@pytest.mark.slow
def test_torch_export_format_runs(tmp_path, tiny, photos, eager):
    from pe_dense.export.mask_rcnn import export_mask_rcnn

    model, cfg, _ = tiny
    path = export_mask_rcnn(model, cfg, SIZE, str(tmp_path), fmt="torch-export", max_dets=MAX_DETS)
    with torch.no_grad():
        out = torch.export.load(path).module()(photos[1])
    for got, want in zip(out, eager):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)


def test_runner_feeds_orig_hw_and_keeps_original_frame_boxes(tmp_path):
    """An --orig-size artefact (hand-built: echoes orig_hw into a box) gets each image's (h, w) fed, its boxes are
    not mapped again, and its RoI masks are pasted at the original size."""
    from onnx import TensorProto, helper

    from pe_dense.deploy import DeployedModel

    def const(name, array, dtype):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, array.shape,
                                                                                  array.flatten().tolist()))
    nodes = [helper.make_node("Cast", ["orig_hw"], ["hw_f"], to=TensorProto.FLOAT),
             const("zeros", np.zeros((1, 2), np.float32), TensorProto.FLOAT),
             helper.make_node("Concat", ["zeros", "hw_f"], ["box"], axis=1),  # [0, 0, h, w]
             helper.make_node("Unsqueeze", ["box", "one"], ["boxes"]),
             const("one", np.array([1]), TensorProto.INT64),
             const("scores", np.array([[0.9]]), TensorProto.FLOAT), const("labels", np.array([[3]]), TensorProto.INT64),
             const("num_dets", np.array([1]), TensorProto.INT64),
             const("masks", np.ones((1, 1, 28, 28), np.float32), TensorProto.FLOAT)]
    nodes.insert(0, nodes.pop(4))
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 1, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 1]),
            helper.make_tensor_value_info("num_dets", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("masks", TensorProto.FLOAT, [1, 1, 28, 28])]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64]),
              helper.make_tensor_value_info("orig_hw", TensorProto.INT64, [1, 2])]
    path = str(tmp_path / "det.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "det", inputs, outs),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    meta = dict(input_size=[64, 64], batch=1, box_frame="original", mask_threshold=0.5,
                normalisation=dict(scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3),
                resize=dict(mode="letterbox", pad_value=[0.5] * 3))
    (tmp_path / "det.json").write_text(json.dumps(meta))
    img = np.zeros((30, 50, 3), np.uint8)
    (res,) = DeployedModel(path)([img])
    np.testing.assert_array_equal(res["boxes"], [[0, 0, 30, 50]])  # (h, w) as the graph got them, unmapped
    assert res["masks"].shape == (1, 30, 50) and res["masks"][0, :30, :30].all()


def test_build_detector_refuses_non_detector_configs():
    import os

    from pe_dense.export.detectors import build_detector

    seg = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo", "seg_probe_pe_t16_voc_demo.py")
    with pytest.raises(ValueError, match="detector export knows .*--model-name PE-Spatial"):
        build_detector(seg, None)
