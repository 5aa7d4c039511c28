#!/usr/bin/env python
"""Probe training throughput from the feature cache versus from images, side by side in one run.

For each model (random init: no weights download) the ADE20k probe config (configs/seg_probe_pe_*_ade20k.py: 512 px
crops, BN + 1x1 conv head, 150 classes, the DINOv2 augmentations) trains on a small real-photo set
(pe_dense.features.photo_set, short side 512) twice: from images (the config as it is) and from the feature cache
(feature_cache=dict(dir=...), runner FeatureCacheRunner). Throughput is images per second over all
``--epochs`` epochs except the first (warm-up), from mmengine's IterTimerHook (time per iteration and the part spent
waiting for data). A second table splits one training step into data, backbone, head forward, loss + backward and
optimizer step (per image, median of repeats), which shows where the time goes.

  python benchmarks/probe_cache.py [--models PE-Spatial-T16-512 PE-Spatial-B16-512] [--images 8] [--epochs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
CONFIG_OF = {"PE-Spatial-T16-512": "seg_probe_pe_t16_ade20k.py", "PE-Spatial-S16-512": "seg_probe_pe_s16_ade20k.py",
             "PE-Spatial-B16-512": "seg_probe_pe_b16_ade20k.py", "PE-Spatial-L14-448": "seg_probe_pe_l14_ade20k.py"}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def probe_cfg(model: str, photos: dict, work_dir: str, images: int, batch: int, epochs: int, cache_dir=None):
    from pe_dense.engine.runner import build_config

    cfg = build_config(os.path.join(CONFIGS, CONFIG_OF[model]), {"data_root": photos["data_root"]}, work_dir=work_dir)
    cfg.custom_imports.imports = list(cfg.custom_imports.imports) + ["pe_dense.features"]
    cfg.train_dataloader.dataset = dict(photos, pipeline=cfg.train_dataloader.dataset.pipeline)
    cfg.train_dataloader.update(batch_size=batch, num_workers=0, persistent_workers=False)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=epochs * images // batch, val_interval=10 ** 9)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=10 ** 9)
    cfg.default_hooks.logger.interval = 10 ** 6
    cfg.log_level = "WARNING"
    cfg.runner_type = "FeatureCacheRunner"
    cfg.feature_cache = dict(dir=cache_dir, num_views=epochs, shard_size=images, batch_size=batch)
    return cfg


def train_epoch_times(cfg, images: int, batch: int, epochs: int):
    """(images/s over the epochs after the first, the share of that time spent waiting for data), and the runner."""
    from pe_dense.engine.runner import train

    runner = train(cfg)
    hub = runner.message_hub
    timed = (epochs - 1) * images // batch
    t = hub.get_scalar("train/time").data[0][-timed:]
    d = hub.get_scalar("train/data_time").data[0][-timed:]
    return (epochs - 1) * images / float(t.sum()), float(d.sum() / t.sum()), runner


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_breakdown(runner, cached_runner, batch: int, repeats: int = 5) -> dict:
    """Milliseconds per image of each part of one training step, on one batch of each path."""
    import torch
    from mmengine.dataset import pseudo_collate

    model = runner.model
    head, optim = model.decode_head, runner.optim_wrapper
    image_ds, cache_ds = runner.train_dataloader.dataset, cached_runner.train_dataloader.dataset
    out = {}
    out["data (images)"] = _median_time(lambda: model.data_preprocessor(
        pseudo_collate([image_ds[i] for i in range(batch)]), True), repeats)
    out["data (cache)"] = _median_time(lambda: cached_runner.model.data_preprocessor(
        pseudo_collate([cache_ds[i] for i in range(batch)]), True), repeats)
    data = model.data_preprocessor(pseudo_collate([image_ds[i] for i in range(batch)]), True)
    with torch.no_grad():
        out["backbone"] = _median_time(lambda: model.backbone(data["inputs"]), repeats)
        feats = model.backbone(data["inputs"])
    out["head forward"] = _median_time(lambda: head(feats), repeats)

    def loss_backward():
        losses = head.loss_by_feat(head(feats), data["data_samples"])
        sum(v for k, v in losses.items() if "loss" in k).backward()
    out["head forward + loss + backward"] = _median_time(loss_backward, repeats)
    out["loss + backward"] = out.pop("head forward + loss + backward") - out["head forward"]
    out["optimizer step"] = _median_time(lambda: optim.step(), repeats)
    optim.zero_grad()
    return {k: 1000 * v / batch for k, v in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["PE-Spatial-T16-512", "PE-Spatial-B16-512"], choices=CONFIG_OF)
    p.add_argument("--images", type=int, default=8, help="photos in the training set (one epoch)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3,
                   help="epochs per run (= views in the cache); all but the first (warm-up) are timed")
    args = p.parse_args(argv)
    if args.images % args.batch or args.epochs < 2:
        p.error("--images must be a multiple of --batch, and --epochs at least 2 (the first is not timed)")

    import torch

    from pe_dense.features import build_feature_cache
    from pe_dense.features.photo_set import write_photo_seg_set

    rows, breakdowns = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = write_photo_seg_set(os.path.join(tmp, "photos"), count=args.images, short_side=512)
        for model in args.models:
            work = os.path.join(tmp, model)
            cfg = probe_cfg(model, photos, work, args.images, args.batch, args.epochs)
            img_rate, img_data, img_runner = train_epoch_times(cfg, args.images, args.batch, args.epochs)
            cache_cfg = probe_cfg(model, photos, work, args.images, args.batch, args.epochs,
                                  cache_dir=os.path.join(work, "cache"))
            t0 = time.perf_counter()
            build_feature_cache(cache_cfg)
            build_s = time.perf_counter() - t0
            cache_rate, cache_data, cache_runner = train_epoch_times(cache_cfg, args.images, args.batch, args.epochs)
            size = sum(os.path.getsize(os.path.join(work, "cache", f)) for f in os.listdir(os.path.join(work, "cache")))
            rows.append((model, img_rate, img_data, cache_rate, cache_data, cache_rate / img_rate,
                         build_s / (args.images * args.epochs), size / (args.images * args.epochs) / 2 ** 20))
            breakdowns[model] = step_breakdown(img_runner, cache_runner, args.batch)

    print(f"\nProbe training, epochs of {args.images} photos at 512 px, batch {args.batch}, random-init backbones; "
          f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | images img/s | data share | cache img/s | data share | speed-up | build s/view-image | "
          "MiB/view-image |")
    print("|---|---|---|---|---|---|---|---|")
    for m, ir, idata, cr, cdata, sp, bs, mib in rows:
        print(f"| {m} | {ir:.3g} | {idata:.0%} | {cr:.3g} | {cdata:.0%} | {sp:.1f}x | {bs:.2f} | {mib:.2f} |")
    print("\nWhere a training step's time goes (ms per image, median of 5):\n")
    parts = list(next(iter(breakdowns.values())))
    print("| model | " + " | ".join(parts) + " |")
    print("|---|" + "---|" * len(parts))
    for m, b in breakdowns.items():
        print(f"| {m} | " + " | ".join(f"{b[k]:.0f}" for k in parts) + " |")
    for m, *_, sp, _bs, _mib in rows:
        if sp < 10:
            b = breakdowns[m]
            rest = b["data (cache)"] + b["head forward"] + b["loss + backward"] + b["optimizer step"]
            print(f"\n{m}: cached is {sp:.1f}x faster, below the 10x goal. Cached steps cost {rest:.0f} ms per image: "
                  f"data {b['data (cache)']:.0f}, head {b['head forward']:.0f}, loss + backward "
                  f"{b['loss + backward']:.0f}, optimizer {b['optimizer step']:.0f}; the backbone they save is "
                  f"{b['backbone']:.0f} ms per image.")


if __name__ == "__main__":
    main()
