"""Slow end-to-end proof that Mask R-CNN learns: overfit the demo photos to box AP50 >= 0.9 on those photos.

Covers anchor/RoI assignment, sampling, the losses, box coding, NMS/post-processing, mask pasting and the COCO
evaluation together (a bug in any of them keeps AP50 low). Runs the demo config (PE-Spatial T, 4 blocks, frozen
random backbone, 320 px) with mmengine's Runner; about 10-15 minutes on 1 CPU thread.
"""
import os
import time

import pytest
from _mask_rcnn_tiny import DEMO_CONFIG

ITERS = int(os.environ.get("PE_DENSE_OVERFIT_ITERS", "600"))


@pytest.mark.slow
def test_mask_rcnn_overfits_demo_photos(demo_data, tmp_path):
    from pe_dense.engine.runner import build_config, test, train

    t0 = time.time()
    cfg = build_config(DEMO_CONFIG, {"data_root": demo_data + "/", "train_cfg.max_iters": ITERS,
                                     "train_cfg.val_interval": ITERS + 1, "default_hooks.logger.interval": 50,
                                     "default_hooks.checkpoint.interval": ITERS},
                       work_dir=str(tmp_path / "work"))
    cfg.param_scheduler[-1].update(end=ITERS, milestones=[int(ITERS * 0.8)])
    runner = train(cfg)
    metrics = test(cfg, runner)
    minutes = (time.time() - t0) / 60
    print(f"overfit {ITERS} iterations in {minutes:.1f} min: box AP50 {metrics['coco/bbox_mAP_50']:.3f}, "
          f"box AP {metrics['coco/bbox_mAP']:.3f}, mask AP50 {metrics['coco/segm_mAP_50']:.3f}")
    assert metrics["coco/bbox_mAP_50"] >= 0.9, metrics
