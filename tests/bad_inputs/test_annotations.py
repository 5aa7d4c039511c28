"""Every COCO annotation file of the corpus through check_coco_file and tools/train.py / tools/test.py (which run it
before building anything): a correct result (what mmdet drops is warned about and really dropped) or one named
error."""
import logging
import os
import re

import pytest
from _bad_input_corpus import COCO_CASES

from pe_dense.cli import run_cli

BAD = sorted(n for n, e in COCO_CASES.items() if e != "ok")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo", "mask_rcnn_pe_t16_demo.py")


def ann(corpus, name):
    return os.path.join(corpus["coco"], "annotations", name)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", BAD)
def test_bad_files_raise_one_named_error(corpus, name, training):
    from pe_dense.engine.data_checks import AnnotationError, check_coco_file

    if name == "empty_annotations.json" and not training:
        pytest.skip("an empty annotation list is allowed in test sets (checked below)")
    with pytest.raises(AnnotationError) as err:
        check_coco_file(ann(corpus, name), training=training, need_masks=True)
    assert re.search(COCO_CASES[name], str(err.value)) and ann(corpus, name) in str(err.value)


def test_counts_of_what_mmdet_drops(corpus):
    from pe_dense.engine.data_checks import check_coco_file

    count = lambda name, training=True: check_coco_file(ann(corpus, name), training=training)  # noqa: E731
    assert count("good.json") == dict(non_finite=0, unknown_category=0, degenerate=0, short_polygon=0, orphan=0)
    assert count("zero_size_box.json")["degenerate"] == 1 and count("negative_size_box.json")["degenerate"] == 1
    assert count("short_polygon.json")["short_polygon"] == 1
    assert sum(count("empty_annotations.json", training=False).values()) == 0
    from pe_dense.engine.data_checks import AnnotationError
    with pytest.raises(AnnotationError, match="polygons with fewer than 3 points, which pycocotools cannot score"):
        check_coco_file(ann(corpus, "short_polygon.json"), training=False)


@pytest.mark.parametrize("name, kept", [("good.json", 2), ("zero_size_box.json", 1), ("negative_size_box.json", 1)])
def test_mmdet_really_drops_the_warned_boxes(corpus, name, kept):
    """The 'correct result' for zero/negative boxes is mmdet's own drop: check it happens with this mmdet."""
    from mmdet.datasets import CocoDataset

    ds = CocoDataset(data_root=corpus["coco"] + "/", ann_file=f"annotations/{name}", data_prefix=dict(img="images/"),
                     metainfo=dict(classes=("person", "cat")), pipeline=[], test_mode=True)
    assert len(ds.get_data_info(0)["instances"]) == kept


def test_what_is_dropped_is_warned_once_with_ids(corpus, monkeypatch):
    from pe_dense.engine import data_checks

    logged = []
    monkeypatch.setattr(data_checks, "print_log", lambda msg, **kw: logged.append((msg, kw.get("level"))))
    monkeypatch.setattr(data_checks, "_warned", set())
    for _ in range(2):
        data_checks.check_coco_file(ann(corpus, "negative_size_box.json"))
        data_checks.check_coco_file(ann(corpus, "short_polygon.json"))
    assert [level for _, level in logged] == [logging.WARNING] * 2
    assert "1 annotation(s) with boxes of zero or negative size (mmdet drops them), e.g. ids 1" in logged[0][0]
    assert "polygons with fewer than 3 points (mmdet ignores these instances)" in logged[1][0]


@pytest.mark.parametrize("name", BAD)
def test_train_and_test_tools_refuse_bad_annotation_files(corpus, tool, tmp_path, capsys, name):
    good_ckpt = os.path.join(corpus["checkpoints"], "good.pt")
    options = ["--cfg-options", f"data_root={corpus['coco']}"]
    train_args = [CONFIG, "--work-dir", str(tmp_path), *options,
                  f"train_dataloader.dataset.ann_file=annotations/{name}"]
    assert run_cli(tool("train").main, train_args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: annotation file {ann(corpus, name)}") and len(err.splitlines()) == 1
    assert re.search(COCO_CASES[name], err) and not os.listdir(tmp_path)  # nothing built, nothing written
    test_args = [CONFIG, good_ckpt, "--work-dir", str(tmp_path), *options,
                 f"test_dataloader.dataset.ann_file=annotations/{name}"]
    status = run_cli(tool("test").main, test_args) if name != "empty_annotations.json" else None
    if status is not None:
        assert status == 2 and capsys.readouterr().err.startswith(f"error: annotation file {ann(corpus, name)}")


def test_annotation_files_of_a_config_are_found_through_wrappers():
    from mmengine.config import Config

    from pe_dense.engine.data_checks import coco_annotation_files

    inner = dict(type="CocoDataset", data_root="/d/", ann_file="a/train.json",
                 pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_mask=True)])
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type="ClassBalancedDataset", dataset=inner)),
                      val_dataloader=dict(dataset=dict(type="ConcatDataset", datasets=[
                          dict(type="CocoDataset", ann_file="/abs/val.json"), dict(type="X", ann_file="")]))))
    assert coco_annotation_files(cfg, ("train_dataloader", "val_dataloader")) == [
        ("/d/a/train.json", True, True), ("/abs/val.json", False, False)]


def test_masks_required_only_when_the_pipeline_loads_them(corpus):
    from pe_dense.engine.data_checks import AnnotationError, check_coco_file

    path = ann(corpus, "missing_segmentation.json")
    assert check_coco_file(path, need_masks=False)["non_finite"] == 0
    with pytest.raises(AnnotationError, match="annotations 1 have no 'segmentation', but the pipeline loads masks"):
        check_coco_file(path, need_masks=True)


@pytest.mark.parametrize("polygon", [[1.0, 2.0, 10.0, 2.0], [1.0, 2.0]])
def test_pycocotools_cannot_score_short_polygons(polygon):
    """Why a short polygon is an error in evaluation sets: pycocotools' mask encoder raises on it."""
    from pycocotools import mask

    with pytest.raises(Exception):  # noqa: B017 - TypeError for 4 numbers, a bare Exception for 2
        mask.frPyObjects([polygon], 20, 20)
