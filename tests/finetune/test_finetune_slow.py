"""Slow end-to-end proof that a fine-tuning template learns a custom dataset: the Mask R-CNN template on the demo
photos renamed (other class names, category ids 5, 8, 11, ...), classes and num_classes from the file, evaluated by
mmdet's CocoMetric against the same file. A wrong id -> label -> id mapping anywhere keeps the AP near zero.

The template's data side is used as a user would (data_root/train_ann/... options, CustomCocoRunner); the model is
shrunk as configs/demo/mask_rcnn_pe_t16_demo.py (4 random frozen blocks, 320 px, 128-channel heads, its optimiser),
300 iterations, so it fits a CPU: no PE weights can be downloaded here. Measured 2026-12-02 on the shared 2-core
machine (load 12-15), 1 thread: 32 min, box AP50 0.979, box AP 0.834, mask AP50 0.915.
"""
import os
import time

import pytest
import torch
from _custom_data import CONFIGS, custom_options

DEMO = os.path.join(CONFIGS, "..", "demo", "mask_rcnn_pe_t16_demo.py")
ITERS = int(os.environ.get("PE_DENSE_OVERFIT_ITERS", "300"))


@pytest.mark.slow
def test_mask_rcnn_template_fine_tunes_a_custom_coco_set(custom_coco, tmp_path):
    from mmengine.config import Config

    from pe_dense.engine.custom_coco import resolve_custom_dataset
    from pe_dense.engine.runner import build_config, test, train

    torch.set_num_threads(1)
    root, coco = custom_coco
    t0 = time.time()
    cfg = build_config(os.path.join(CONFIGS, "mask_rcnn_pe_t16_custom.py"),
                       custom_options(root, frozen_backbone=True), work_dir=str(tmp_path / "work"))
    demo = Config.fromfile(DEMO)
    cfg.model = demo.model
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].dataset.pipeline = demo[loader].dataset.pipeline
        cfg[loader].update(num_workers=0, persistent_workers=False)
    cfg.optim_wrapper, cfg.log_processor = demo.optim_wrapper, demo.log_processor
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=ITERS, val_interval=ITERS + 1)
    cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=20),
                           dict(type="MultiStepLR", by_epoch=False, begin=0, end=ITERS,
                                milestones=[int(ITERS * 0.8)], gamma=0.1)]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=ITERS, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 50
    resolve_custom_dataset(cfg)  # the demo model's heads get this file's class count again
    assert cfg.model.roi_head.bbox_head.num_classes == 12 and cfg.classes[0] == "thing_bottle"

    runner = train(cfg)
    metrics = test(cfg, runner)
    minutes = (time.time() - t0) / 60
    print(f"fine-tuned {ITERS} iterations in {minutes:.1f} min: box AP50 {metrics['coco/bbox_mAP_50']:.3f}, "
          f"box AP {metrics['coco/bbox_mAP']:.3f}, mask AP50 {metrics['coco/segm_mAP_50']:.3f}")
    assert metrics["coco/bbox_mAP_50"] >= 0.9, metrics
