"""The demo Mask R-CNN config shrunk for tests (helper module, imported by the engine tests)."""
import os

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
DEMO_CONFIG = os.path.join(CONFIGS, "demo", "mask_rcnn_pe_t16_demo.py")


def tiny_demo_cfg(data_root, work_dir, max_iters=4, size=128, layers=1, num_workers=0, **options):
    """The demo config shrunk for tests: ``layers`` blocks, ``size`` px, no scheduler decay, quiet logging."""
    from pe_dense.engine.runner import build_config

    opts = {"data_root": data_root.rstrip("/") + "/", "train_cfg.max_iters": max_iters,
            "train_cfg.val_interval": max_iters + 1, "default_hooks.logger.interval": 1,
            "default_hooks.checkpoint.interval": max_iters, "log_level": "WARNING"}
    opts.update(options)
    cfg = build_config(DEMO_CONFIG, opts, work_dir=str(work_dir))
    cfg.model.backbone.model_overrides = dict(layers=layers)
    for pipeline in (cfg.train_dataloader.dataset.pipeline, cfg.val_dataloader.dataset.pipeline,
                     cfg.test_dataloader.dataset.pipeline):
        for t in pipeline:
            if "scale" in t:
                t["scale"] = (size, size)
    cfg.train_dataloader.num_workers = num_workers
    cfg.train_dataloader.persistent_workers = False
    cfg.param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=max_iters)]
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook")
    return cfg
