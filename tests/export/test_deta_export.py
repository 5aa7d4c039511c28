"""DETA export against the eager mmdet model on real photos: raw head outputs, post-processed detections (NMS and
query selection in the graph), an image with nothing in it, B=1 and B=2, onnxruntime and OpenVINO. The photos are
not square, so their letterbox leaves padding, which the orig_size graph must mask as eager mmdet does."""
import numpy as np
import pytest
import torch
from _deta_export_tiny import build_demo_deta, photos

from pe_dense.deploy.preprocess import prepare

FAST_SIZE = (128, 128)
DEMO_SIZE = (256, 256)
MAX_DETS = 50
SCORE_TOL = 1e-3


@pytest.fixture(scope="module")
def small_deta():
    return build_demo_deta(small=True)


@pytest.fixture(scope="module")
def small_artefact(small_deta, tmp_path_factory):
    from pe_dense.export.deta import export_deta

    model, cfg = small_deta
    return export_deta(model, cfg, FAST_SIZE, str(tmp_path_factory.mktemp("deta")), max_dets=MAX_DETS,
                       with_raw=True, orig_size=True)


def _inputs(meta, imgs):
    return torch.from_numpy(np.stack([prepare(im, meta)[0] for im in imgs]))


def _eager(model, x, max_dets, orig_hw=None):
    """Eager raw outputs of the last decoder layer and mmdet's predict. With ``orig_hw`` (B, 2) the images are
    letterboxed as the config's ``Resize(keep_ratio=True)`` does: ``img_shape`` the resized size (mmdet masks the
    padding beyond it) and boxes rescaled to the original pixels; without, the whole input is the image."""
    from mmdet.structures import DetDataSample

    from pe_dense.export.mask_rcnn import letterbox_hw

    size = tuple(x.shape[-2:])
    if orig_hw is None:
        metas = [dict(img_shape=size, ori_shape=size, scale_factor=(1.0, 1.0))] * len(x)
    else:
        resized = letterbox_hw(torch.as_tensor(orig_hw), size).long().tolist()
        metas = [dict(img_shape=(rh, rw), ori_shape=(h, w), scale_factor=(rw / w, rh / h))
                 for (rh, rw), (h, w) in zip(resized, np.asarray(orig_hw).tolist())]
    samples = [DetDataSample(metainfo=dict(m, batch_input_shape=size)) for m in metas]
    model.bbox_head.test_cfg["max_per_img"] = max_dets
    with torch.no_grad():
        cls, coords = model(x, samples, mode="tensor")
        preds = model.predict(x, samples, rescale=orig_hw is not None)
    return cls[-1], coords[-1], [p.pred_instances for p in preds]


def _iou(a, b):
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), -1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def assert_same_detections(got, ref, iou_min=0.99, score_tol=SCORE_TOL):
    """Every detection scoring clearly above the last kept score (by more than ``score_tol``, so near-ties at the
    cut-off cannot swap in or out) has a partner in the other set: same label, IoU >= ``iou_min``, score within
    ``score_tol``. Returns how many were compared (callers assert it is not zero)."""
    (gb, gs, gl), (rb, rs, rl) = got, ref
    assert len(gs) == len(rs), f"{len(gs)} detections vs eager {len(rs)}"
    if len(rs) == 0:
        return 0
    cut = min(gs.min(), rs.min()) + score_tol
    compared = 0
    for (ab, as_, al), (bb, bs, bl) in (((gb, gs, gl), (rb, rs, rl)), ((rb, rs, rl), (gb, gs, gl))):
        iou = _iou(ab, bb)
        for i in np.flatnonzero(as_ > cut):
            # a box clipped to zero height or width has no IoU: then the corners must agree to 0.01 px
            same_box = (iou[i] >= iou_min) | (np.abs(bb - ab[i]).max(-1) <= 1e-2)
            ok = (bl == al[i]) & same_box & (np.abs(bs - as_[i]) <= score_tol)
            near = (bl == al[i]) & (np.abs(bs - as_[i]) <= score_tol)
            assert ok.any(), (f"detection {ab[i]} label {al[i]} score {as_[i]:.5f} has no partner; same label and "
                              f"score: {bb[near].tolist()} {bs[near].tolist()}")
            compared += 1
    return compared


def _check_against_eager(model, outputs, x, orig_hw=None):
    """``orig_hw``: the original (h, w) of each image (an orig_size graph, boxes in original pixels). The eager
    boxes are clipped to it: orig_size boxes are clipped to the original image, while the demo config's eager
    head does not clip (test_cfg.clip_boxes=False)."""
    boxes, scores, labels, num = outputs[:4]
    ref_cls, ref_coords, preds = _eager(model, x, boxes.shape[1], orig_hw)
    clip_hw = None if orig_hw is None else np.asarray(orig_hw)
    np.testing.assert_allclose(outputs[4], ref_cls.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(outputs[5], ref_coords.numpy(), rtol=1e-3, atol=1e-4)
    compared = 0
    for b, p in enumerate(preds):
        n = int(num[b])
        ref_boxes = p.bboxes.numpy()
        if clip_hw is not None:
            ref_boxes = np.clip(ref_boxes, 0, np.array([clip_hw[b][1], clip_hw[b][0]] * 2, np.float32))
        assert (scores[b, n:] == 0).all() and (labels[b, n:] == -1).all() and (boxes[b, n:] == 0).all()
        compared += assert_same_detections((boxes[b, :n], scores[b, :n], labels[b, :n]),
                                           (ref_boxes, p.scores.numpy(), p.labels.numpy()))
    assert compared >= len(preds) * 10  # the comparison is never vacuous
    assert labels.dtype == np.int64 and num.dtype == np.int64


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_matches_eager_on_photos_and_an_empty_image(small_deta, small_artefact, runtime):
    """B=2 (two photos, 375x500 and 480x640, letterboxed to 96x128 in 128x128) and B=1 (a constant grey 300x400
    image): raw logits/boxes and NMS'd detections in original pixels as eager mmdet with the padding masked."""
    from pe_dense.export.artefact import load_metadata

    model, _ = small_deta
    meta = load_metadata(small_artefact)
    run = _runner(small_artefact, runtime)
    imgs = photos()
    for batch in (imgs[:2], imgs[2:]):
        x = _inputs(meta, batch)
        hw = np.array([im.shape[:2] for im in batch], np.int64)
        _check_against_eager(model, run(x.numpy(), hw), x, orig_hw=hw)


def test_without_orig_size_the_whole_input_is_image(small_deta):
    """Without orig_hw the graph cannot know the padding: it equals eager mmdet told the whole input is image
    (img_shape == batch_input_shape), and differs from the masked eager model on a letterboxed photo."""
    from pe_dense.export.deta import DETAExport

    model, _ = small_deta
    meta = dict(input_size=list(FAST_SIZE), resize=dict(mode="letterbox", pad_value=[0.5] * 3),
                normalisation=dict(scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3))
    img = photos()[0]
    x = _inputs(meta, [img])
    with torch.no_grad():
        logits, coords = DETAExport(model, FAST_SIZE).raw(x)
    ref_cls, ref_coords, _ = _eager(model, x, MAX_DETS)
    torch.testing.assert_close(logits, ref_cls, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(coords, ref_coords, rtol=1e-4, atol=1e-5)
    masked_cls, _, _ = _eager(model, x, MAX_DETS, orig_hw=np.array([img.shape[:2]]))
    assert (logits - masked_cls).abs().max() > 1e-2


def test_graph_is_clean_and_carries_its_metadata(small_artefact):
    import onnx

    from pe_dense.export.artefact import load_metadata
    from pe_dense.export.graph_checks import graph_problems

    onnx.checker.check_model(small_artefact, full_check=True)
    graph = onnx.load(small_artefact)
    assert graph_problems(graph) == []
    modes = {a.s.decode() for n in graph.graph.node if n.op_type == "GridSample" for a in n.attribute
             if a.name == "mode"}
    assert modes == {"bilinear"}  # deformable attention samples bilinearly in every runtime (opset 18)
    meta = load_metadata(small_artefact)
    assert meta["classes"][:2] == ["bottle", "chair"] and meta["input_size"] == list(FAST_SIZE)
    assert meta["box_format"] == "xyxy" and meta["resize"]["mode"] == "letterbox" and meta["box_frame"] == "original"
    assert meta["resize"]["padding_seen_as_image"] is False
    assert [i.name for i in graph.graph.input] == ["images", "orig_hw"]
    assert not {"NonZero", "If", "Loop"} & {n.op_type for n in graph.graph.node}  # fixed shapes only
    assert meta["normalisation"]["mean"] == [0.5] * 3 and meta["opset"] == 18
    assert [o.name for o in graph.graph.output][:4] == ["boxes", "scores", "labels", "num_dets"]


def test_deploy_runner_reads_the_detector(small_artefact):
    """The torch-free runner returns the filled slots in original pixels (its letterbox inverted)."""
    from pe_dense.deploy import DeployedModel

    img = photos()[0]  # 375 x 500
    res = DeployedModel(small_artefact)([img])[0]
    n = len(res["scores"])
    assert n > 0 and res["boxes"].shape == (n, 4) and (res["labels"] >= 0).all()
    assert res["boxes"][:, 2].max() <= 500 and res["boxes"][:, 3].max() <= 375


def test_letterbox_to_original_by_hand():
    """A 375x500 image letterboxed into 128x128 is 96x128 (scale 0.256): input pixels / 0.256 per axis, clipped."""
    from pe_dense.export.deta import letterbox_to_original

    boxes = torch.tensor([[[12.8, 9.6, 64.0, 120.0], [0.0, 0.0, 0.0, 0.0]]])
    got = letterbox_to_original(boxes, torch.tensor([[375, 500]]), (128, 128))
    want = torch.tensor([[[50.0, 37.5, 250.0, 375.0], [0.0, 0.0, 0.0, 0.0]]])  # 120 / 0.256 = 468.75 -> 375
    torch.testing.assert_close(got, want)


def test_refuses_sizes_and_nms_it_cannot_serve(small_deta):
    import copy

    from pe_dense.export.baked import SizeNotServedError
    from pe_dense.export.deta import DETAExport

    model, _ = small_deta
    with pytest.raises(SizeNotServedError, match="pad_size_divisor 32"):
        DETAExport(model, (144, 128))  # a patch multiple, but the model pads to 32
    soft = copy.deepcopy(model)
    soft.bbox_head.test_cfg["nms"] = dict(type="soft_nms", method="quad")
    with pytest.raises(ValueError, match="no fixed-size export"):
        DETAExport(soft, FAST_SIZE)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_demo_deta_full_size_matches_eager(runtime, tmp_path):
    """The demo DETA as configured (4 blocks, 100 queries, 256 px): B=1 and B=2 on the photos and the grey image,
    in onnxruntime or OpenVINO; exported with orig_size (padding masked), boxes checked in original pixels."""
    from pe_dense.export.artefact import load_metadata
    from pe_dense.export.deta import export_deta

    model, cfg = build_demo_deta()
    path = export_deta(model, cfg, DEMO_SIZE, str(tmp_path), fmt="onnx", orig_size=True, with_raw=True)
    meta = load_metadata(path)
    run = _runner(path, runtime)
    imgs = photos()
    for batch in (imgs[:2], imgs[2:]):
        x = _inputs(meta, batch)
        hw = np.array([im.shape[:2] for im in batch], np.int64)
        _check_against_eager(model, run(x.numpy(), hw), x, orig_hw=hw)


def _runner(path, runtime):
    """``run(images, orig_hw=None)`` -> outputs as numpy arrays, in onnxruntime or OpenVINO (CPU, fp32)."""
    def feed(x, hw):
        return {"images": x, **({} if hw is None else {"orig_hw": hw})}

    if runtime == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda x, hw=None: sess.run(None, feed(x, hw))
    import openvino as ov

    compiled = ov.Core().compile_model(ov.convert_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x, hw=None: [np.asarray(v) for v in compiled(feed(x, hw)).values()]


def test_fp16_keeps_norms_in_fp32_and_the_pyramid_close(small_deta):
    """fp16 runs the PE tower in half precision (LayerNorm and attention float32 islands); the pyramid the
    transformer reads stays within 1% of float32 on the photos (max error / max magnitude per level). Raw outputs
    are not compared: on random weights the query selection turns a 1e-3 difference into other queries."""
    from pe_dense.export.deta import DETAExport
    from pe_dense.export.feature_extractor import Fp32Island

    model, _ = small_deta
    meta = dict(input_size=list(FAST_SIZE), resize=dict(mode="letterbox", pad_value=[0.5] * 3),
                normalisation=dict(scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3))
    x = _inputs(meta, photos()[:2])
    half = DETAExport(model, FAST_SIZE, fp16=True)
    assert any(isinstance(m, Fp32Island) for m in half.model.backbone.modules())
    assert half.model.backbone.conv1.weight.dtype == torch.float16
    with torch.no_grad():
        ref, got = DETAExport(model, FAST_SIZE)._features(x), half._features(x)
    for r, g in zip(ref, got):
        assert g.dtype == torch.float32
        rel = float((r - g).abs().max() / r.abs().max())
        assert 0 < rel < 1e-2


@pytest.mark.slow
def test_torch_export_format_equals_the_wrapper(small_deta, tmp_path):
    """--format torch-export: the saved ExportedProgram (orig_size, two inputs) loads and gives the wrapper's
    outputs on the letterboxed photos."""
    from pe_dense.export.deta import DETAExport, export_deta

    model, cfg = small_deta
    path = export_deta(model, cfg, FAST_SIZE, str(tmp_path), fmt="torch-export", max_dets=MAX_DETS, orig_size=True)
    meta = dict(input_size=list(FAST_SIZE), resize=dict(mode="letterbox", pad_value=[0.5] * 3),
                normalisation=dict(scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3))
    imgs = photos()[:2]
    x, hw = _inputs(meta, imgs), torch.tensor([im.shape[:2] for im in imgs])
    with torch.no_grad():
        got = torch.export.load(path).module()(x, hw)
        want = DETAExport(model, FAST_SIZE, max_dets=MAX_DETS, orig_size=True)(x, hw)
    assert int(want[3].min()) > 0  # detections to compare
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
