#!/usr/bin/env python
"""Depth demo on real measured depth: a DPT head on a frozen, random-init PE-Spatial T, overfit to two RGB-D frames.

  python tools/demo_depth.py [--out-dir outputs] [--iters 200]

Writes the frames in NYU layout (OUT/demo_depth_data), trains with configs/demo/depth_pe_t16_demo.py through
mmengine's runner (the same path as tools/train.py), evaluates RMSE/AbsRel/delta1 and writes
OUT/depth/<frame>_depth.png: photo | predicted depth | measured depth (turbo colour map, black = no measurement).
The backbone has random weights (nothing can be downloaded), so the picture shows that the pipeline learns.
"""
import argparse
import logging
import os
import sys
import time

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "demo", "depth_pe_t16_demo.py")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="outputs")
    p.add_argument("--iters", type=int, help="training iterations at batch 2 (default: the config's max_iters)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from mmengine.config import Config

    from pe_dense.data.demo_depth import build_demo_depth
    from pe_dense.engine.runner import build_config, train

    t0 = time.perf_counter()
    out_dir = os.path.abspath(args.out_dir)
    data_dir = build_demo_depth(os.path.join(out_dir, "demo_depth_data"), size=Config.fromfile(CONFIG).image_size)
    cfg = build_config(CONFIG, {"data_root": str(data_dir) + "/"},
                       work_dir=os.path.join(out_dir, "work_dirs", "depth_demo"))
    iters = args.iters or cfg.max_iters
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
    cfg.param_scheduler[-1].end = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.visualization.update(draw=True, test_out_dir=os.path.join(out_dir, "depth"))
    logging.warning("PE-Spatial-T16-512 has random weights in this demo (no checkpoint can be downloaded)")
    runner = train(cfg)
    metrics = runner.test()
    print(f"depth demo: rmse {metrics['rmse']:.3f} m, abs_rel {metrics['abs_rel']:.3f}, d1 {metrics['d1']:.3f} "
          f"after {iters} iterations in {time.perf_counter() - t0:.0f}s; pictures in "
          f"{os.path.join(out_dir, 'depth')}")
    return 0


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
