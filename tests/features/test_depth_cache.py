"""The cache on the depth task: NYU linear-probe config (SlidingDepthEstimator, cls tokens, float depth targets) on
real measured depth; training from the cache equals training on images with the same views."""
import os

import pytest
import torch

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")


@pytest.fixture(scope="module")
def depth_root(tmp_path_factory):
    from pe_dense.data.demo_depth import build_demo_depth

    return str(build_demo_depth(tmp_path_factory.mktemp("depth"), size=(96, 128)))


def _depth_cfg(root, work, **options):
    import pe_dense.features  # noqa: F401  (registers the runner, dataset and sampler)
    from pe_dense.engine.runner import build_config

    opts = {"data_root": root, "model.backbone.model_name": "PE-Spatial-T16-512",
            "model.backbone.model_overrides": dict(layers=2), "model.decode_head.in_channels": 192,
            "train_dataloader.batch_size": 2, "train_dataloader.num_workers": 0,
            "train_dataloader.persistent_workers": False, "train_dataloader.dataset.img_suffix": ".png",
            "train_cfg.max_epochs": 3, "runner_type": "FeatureCacheRunner", "log_level": "WARNING",
            "feature_cache": dict(dir=str(work / "cache"), num_views=2, dtype="float32", shard_size=2, batch_size=2)}
    opts.update(options)
    cfg = build_config(os.path.join(CONFIGS, "depth_pe_b16_nyu_linear.py"), opts, work_dir=str(work))
    for t in cfg.train_dataloader.dataset.pipeline:
        if t.type == "RandomCrop":
            t.crop_size = (64, 96)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1000)
    return cfg


def test_cached_depth_training_equals_image_training(depth_root, tmp_path):
    from pe_dense.engine.runner import train
    from pe_dense.features import build_feature_cache

    cfg = _depth_cfg(depth_root, tmp_path)
    build_feature_cache(cfg)
    assert sorted(os.listdir(tmp_path / "cache"))[:1] == ["manifest.json"]
    import numpy as np
    shard = np.load(tmp_path / "cache" / "view000_part00000.npy", mmap_mode="r")
    assert set(shard.dtype.names) == {"map0", "cls0", "gt_depth_map"} and shard["gt_depth_map"].dtype == np.float32
    cached = train(cfg)
    images = train(_depth_cfg(depth_root, tmp_path / "images", **{"feature_cache.source": "images"}))
    assert type(cached.model).__name__ == "FeatureCacheSlidingDepthEstimator"
    la, lb = (torch.as_tensor(r.message_hub.get_scalar("train/loss").data[0]) for r in (cached, images))
    assert len(la) == 3 and torch.isfinite(la).all()  # 2 images, batch 2: one iteration per epoch
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    ha, hb = cached.model.decode_head.state_dict(), images.model.decode_head.state_dict()
    for k in hb:
        torch.testing.assert_close(ha[k], hb[k], rtol=1e-4, atol=1e-6)
