"""Bad input: undecodable images, grayscale/RGBA, boxes outside the image, wrong labels, empty datasets."""
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from PIL import Image

from pe_dense.engine import CheckedLoadImageFromFile, PreflightHook, SanitizeBoxes, data_checks, to_three_channels


@pytest.fixture(autouse=True)
def _fresh_warnings():
    data_checks._warned.clear()
    yield


def _warnings(caplog):
    return " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.fixture
def capture(caplog):
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_corrupt_image_is_skipped_in_training_and_an_error_in_testing(tmp_path, capture):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert CheckedLoadImageFromFile(skip_bad=True).transform(dict(img_path=str(bad))) is None
    assert "skipping image" in _warnings(capture) and "broken.jpg" in _warnings(capture)
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg.*not a decodable image"):
        CheckedLoadImageFromFile(skip_bad=False).transform(dict(img_path=str(bad)))
    with pytest.raises(ValueError, match="file not found|missing"):
        CheckedLoadImageFromFile(skip_bad=False).transform(dict(img_path=str(tmp_path / "nope.png")))


@pytest.mark.parametrize("mode,color_type", [("L", "color"), ("RGBA", "color"), ("L", "unchanged"),
                                             ("RGBA", "unchanged"), ("LA", "unchanged")])
def test_grayscale_and_rgba_become_three_channels(tmp_path, mode, color_type, capture):
    arr = np.random.RandomState(0).randint(0, 255, (20, 30, len(mode)), dtype=np.uint8)
    path = tmp_path / f"img_{mode}.png"
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(path)
    out = CheckedLoadImageFromFile(color_type=color_type).transform(dict(img_path=str(path), height=20, width=30))
    assert out["img"].shape == (20, 30, 3) and out["img"].dtype == np.uint8
    assert _warnings(capture) == ""


def test_annotation_size_mismatch_is_named(tmp_path, capture):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    CheckedLoadImageFromFile().transform(dict(img_path=str(path), height=30, width=20))
    assert "is 30x20 but its annotation says 20x30" in _warnings(capture)


def test_to_three_channels_rejects_odd_shapes():
    with pytest.raises(ValueError, match="HxW"):
        to_three_channels(np.zeros((4, 4, 2), np.uint8))


def _sample(boxes, labels, h=50, w=60):
    n = len(boxes)
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        masks[i, i, i] = 1  # mark each mask to follow it through the filtering
    return dict(img_path="x.png", img=np.zeros((h, w, 3), np.uint8), img_shape=(h, w),
                gt_bboxes=HorizontalBoxes(torch.tensor(boxes, dtype=torch.float32)),
                gt_bboxes_labels=np.array(labels, dtype=np.int64), gt_ignore_flags=np.zeros(n, bool),
                gt_masks=BitmapMasks(masks, h, w))


def test_boxes_outside_are_clipped_or_dropped_with_their_masks(capture):
    boxes = [[10, 10, 20, 20],          # inside
             [-5, 40, 30, 70],          # partly outside: clipped
             [70, 10, 90, 20],          # fully outside (x > width 60): dropped
             [5, 5, float("nan"), 9],   # not finite: dropped
             [30, 30, 30.5, 40]]        # thinner than 1 px: dropped
    out = SanitizeBoxes(num_classes=3).transform(_sample(boxes, [0, 1, 2, 0, 1]))
    assert out["gt_bboxes"].tensor.tolist() == [[10, 10, 20, 20], [0, 40, 30, 50]]
    assert out["gt_bboxes_labels"].tolist() == [0, 1]
    assert len(out["gt_masks"]) == 2 and out["gt_masks"].masks[1][1, 1] == 1  # the second kept box's own mask
    assert out["gt_ignore_flags"].shape == (2,)
    msg = _warnings(capture)
    assert "clipped 1 box(es)" in msg and "dropped 3" in msg


def test_label_outside_model_classes_is_an_error():
    with pytest.raises(ValueError, match=r"labels \[7\] are outside the model's 3 classes.*num_classes"):
        SanitizeBoxes(num_classes=3).transform(_sample([[1, 1, 5, 5]], [7]))


def test_empty_annotation_list_passes_through():
    sample = _sample([], [])
    sample["gt_bboxes"] = HorizontalBoxes(torch.zeros(0, 4))
    assert len(SanitizeBoxes().transform(sample)["gt_bboxes"]) == 0


def _demo_copy(demo_data, tmp_path, annotations=None, extra_image=None):
    root = tmp_path / "data"
    shutil.copytree(demo_data, root)
    ann_path = root / "annotations" / "demo.json"
    coco = json.loads(ann_path.read_text())
    if annotations is not None:
        coco["annotations"] = annotations
    if extra_image is not None:
        name, data = extra_image
        (root / "images" / name).write_bytes(data)
        coco["images"].append(dict(id=99, file_name=name, height=375, width=500))
        coco["annotations"].append(dict(id=999, image_id=99, category_id=1, bbox=[10, 10, 50, 50], area=2500,
                                        iscrowd=0, segmentation=[[10, 10, 60, 10, 60, 60, 10, 60]]))
    ann_path.write_text(json.dumps(coco))
    return str(root)


def _train_dataset(root):
    from _mask_rcnn_tiny import tiny_demo_cfg
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = tiny_demo_cfg(root, os.path.join(root, "work"))
    return DATASETS.build(cfg.train_dataloader.dataset)


def test_training_skips_an_undecodable_image_with_a_warning(demo_data, tmp_path, capture):
    root = _demo_copy(demo_data, tmp_path, extra_image=("corrupt.jpg", b"\x00" * 100))
    ds = _train_dataset(root)
    assert len(ds) == 3
    bad = [i for i in range(3) if ds.get_data_info(i)["img_path"].endswith("corrupt.jpg")][0]
    sample = ds[bad]  # mmengine fetches another sample instead
    assert not sample["data_samples"].img_path.endswith("corrupt.jpg")
    assert "skipping image" in _warnings(capture) and "corrupt.jpg" in _warnings(capture)


def test_empty_annotations_give_a_clear_error_before_training(demo_data, tmp_path):
    from _mask_rcnn_tiny import tiny_demo_cfg

    from pe_dense.engine.runner import train

    root = _demo_copy(demo_data, tmp_path, annotations=[])
    with pytest.raises(ValueError, match="dataset has no samples.*demo.json.*filter_empty_gt"):
        train(tiny_demo_cfg(root, tmp_path / "work"))


def test_preflight_names_an_empty_dataset():
    class Loader:
        dataset = []

    class Runner:
        train_dataloader = Loader()

    with pytest.raises(ValueError, match="train_dataloader has no samples.*filter_empty_gt"):
        PreflightHook().before_train(Runner())


def test_preflight_names_a_backbone_neck_mismatch():
    from pe_dense.mm import PEBackbone, SimpleFeaturePyramid

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = PEBackbone("PE-Spatial-T16-512", model_overrides=dict(layers=1))
            self.neck = SimpleFeaturePyramid(in_channels=384)  # T is 192 wide

    class Runner:
        model = Model()

    with pytest.raises(ValueError, match="in_channels=192"):
        PreflightHook().before_run(Runner())
