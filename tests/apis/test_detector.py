"""Detector against mmdet's own inference path, input forms, batching and COCO-format output."""
import json
import os

import numpy as np
import pytest
import torch
from conftest import DETA, FAST_MASK_RCNN, MASK_RCNN


def mmdet_reference(config, checkpoint, options, paths):
    """mmdet's ``init_detector`` + ``inference_detector`` (its own pipeline handling and ``test_step``)."""
    from mmdet.apis import inference_detector, init_detector

    from pe_dense.engine.checkpoint_io import allow_mmengine_checkpoint_types
    from pe_dense.engine.runner import build_config

    allow_mmengine_checkpoint_types()
    model = init_detector(build_config(config, options), checkpoint, device="cpu")
    return [inference_detector(model, p).pred_instances for p in paths]


def assert_same(ours, ref, atol=1e-4):
    assert len(ours) == len(ref) > 0
    np.testing.assert_allclose(ours.boxes, ref.bboxes.numpy(), atol=atol, rtol=0)
    np.testing.assert_allclose(ours.scores, ref.scores.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(ours.labels, ref.labels.numpy())


@pytest.fixture(scope="module")
def mask_rcnn_results(demo_coco, mask_rcnn_ckpt, demo_photos):
    from pe_dense.apis import Detector

    options = {"data_root": demo_coco + "/", **FAST_MASK_RCNN}
    det = Detector(MASK_RCNN, mask_rcnn_ckpt, batch_size=2, cfg_options=options)
    return det, det(demo_photos), options


def test_mask_rcnn_equals_mmdet_inference(mask_rcnn_results, mask_rcnn_ckpt, demo_photos):
    det, results, options = mask_rcnn_results
    refs = mmdet_reference(MASK_RCNN, mask_rcnn_ckpt, options, demo_photos)  # one image at a time
    for res, ref, path in zip(results, refs, demo_photos):
        assert_same(res, ref)
        h, w = res.image_size
        assert res.masks.dtype == bool and res.masks.shape == (len(res), h, w)  # original pixels, not 320 px
        assert (h, w) == {"arc2017.png": (480, 640), "voc.png": (375, 500)}[os.path.basename(path)]
        assert (ref.masks.numpy() != res.masks).mean() < 1e-4
        assert res.boxes[:, 2].max() > 320 * 0.9  # boxes rescaled from the 320 px input to the photo
        assert res.class_names == [det.class_names[i] for i in res.labels]
    assert det.class_names[:2] == ["bottle", "chair"]  # the config's classes, not COCO's default


def test_deta_equals_mmdet_inference_and_batches(deta, deta_ckpt, demo_coco, demo_photos):
    singles = [deta(p) for p in demo_photos]
    refs = mmdet_reference(DETA, deta_ckpt, {"data_root": demo_coco + "/"}, demo_photos)
    for res, ref in zip(singles, refs):
        assert_same(res, ref)
    pair = deta(demo_photos, batch_size=2)  # a batch of 2 equals two singles
    for res, single in zip(pair, singles):
        np.testing.assert_allclose(res.boxes, single.boxes, atol=1e-3)
        np.testing.assert_allclose(res.scores, single.scores, atol=1e-5)


def test_input_forms_agree(deta, demo_photos, demo_coco):
    import cv2
    from PIL import Image

    from pe_dense.apis.inputs import normalise_inputs

    path = demo_photos[1]
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    by_path = deta(path)
    assert not isinstance(by_path, list)
    for other in deta([rgb, Image.fromarray(rgb)]):  # RGB arrays (flipped to BGR once) and PIL images
        np.testing.assert_array_equal(other.boxes, by_path.boxes)
        np.testing.assert_array_equal(other.scores, by_path.scores)
    folder = os.path.join(demo_coco, "images")
    assert normalise_inputs(folder) == ([(p, p) for p in demo_photos], False)
    assert normalise_inputs(os.path.join(folder, "v*.png")) == ([(path, path)], False)
    assert normalise_inputs(path) == ([(path, path)], True)
    with pytest.raises(FileNotFoundError, match="matches no files"):
        deta(os.path.join(demo_coco, "nothing*.jpg"))
    with pytest.raises(ValueError, match="uint8"):
        deta(rgb.astype(np.float32))


def test_coco_json_round_trip(mask_rcnn_results, demo_coco, tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    det, results, _ = mask_rcnn_results
    ann = os.path.join(demo_coco, "annotations", "demo.json")
    gt = COCO(ann)
    ids = {os.path.basename(im["file_name"]): im["id"] for im in gt.dataset["images"]}
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    entries = [e for r in results for e in r.to_coco(ids[os.path.basename(r.path)])]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(entries))
    dt = gt.loadRes(str(path))
    for r in results:
        anns = dt.loadAnns(dt.getAnnIds(imgIds=[ids[os.path.basename(r.path)]]))
        assert len(anns) == len(r)
        for a, box, score, name, m in zip(anns, r.boxes, r.scores, r.class_names, r.masks):
            np.testing.assert_allclose(a["bbox"], [box[0], box[1], box[2] - box[0], box[3] - box[1]], atol=1e-3)
            assert a["score"] == pytest.approx(float(score))
            assert names[a["category_id"]] == name  # ids read from the annotation file, matched by name
            np.testing.assert_array_equal(mask_utils.decode(a["segmentation"]).astype(bool), m)


def test_draw_and_save(deta, demo_photos, tmp_path):
    res = deta(demo_photos[1])
    img = res.draw(score_thr=0.0)
    assert img.shape == (375, 500, 3) and img.dtype == np.uint8
    assert (img != res.draw(score_thr=2.0)).any()  # something was drawn
    out = res.save(str(tmp_path / "d.png"))
    assert os.path.getsize(out) > 0


def test_wrong_checkpoint_is_named(demo_coco, mask_rcnn_ckpt):
    from pe_dense.apis import Detector
    from pe_dense.engine.runner import CheckpointMismatch

    with pytest.raises(CheckpointMismatch, match="does not fit"):
        Detector(DETA, mask_rcnn_ckpt, cfg_options={"data_root": demo_coco + "/"})


def test_importing_apis_does_not_import_openmmlab():
    import subprocess
    import sys

    code = ("import sys, pe_dense.apis as a; assert 'mmdet' not in sys.modules and 'mmseg' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith('mm')); a.Tracker; assert 'mmdet' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert torch is not None


def test_empty_detections_give_empty_coco():
    from pe_dense.apis import Detections

    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [],
                       masks=np.zeros((0, 5, 7), bool), image_size=(5, 7))
    assert empty.to_coco(3) == [] and len(empty.above(0.5)) == 0
    assert empty.draw(image=np.zeros((5, 7, 3), np.uint8)).shape == (5, 7, 3)


def test_no_checkpoint_means_the_models_own_random_init(demo_coco, caplog):
    """checkpoint=None runs init_weights: mmdet's DETA level_embed is otherwise uninitialised memory (NaN scores
    on some runs); it gets init_weights' normal(0, 1) and every weight is finite."""
    from pe_dense.apis import Detector

    with caplog.at_level("WARNING"):
        det = Detector(DETA, None, cfg_options={"data_root": demo_coco + "/"})
    assert "random weights" in caplog.text
    assert 0.5 < float(det.model.level_embed.std()) < 1.5
    assert all(bool(p.isfinite().all()) for p in det.model.parameters())
