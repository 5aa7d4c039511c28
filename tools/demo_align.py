#!/usr/bin/env python
"""CPU demonstration of the SAM 2-guided alignment on real photos with tiny random PE and SAM 2 models.

  python tools/demo_align.py [--out-dir outputs/align] [--steps 30]

Trains configs/align/demo_align_tiny.py, logs both losses, and writes
  OUT/losses.png      L_core and L_loc per step (the first and last five steps' means are logged),
  OUT/pca_before_after.png   photo | student feature PCA before | after,
  OUT/student.pt      the student in the official PE layout.
"""
import argparse
import os
import sys

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "align", "demo_align_tiny.py")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="outputs/align")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--config", default=CONFIG)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pe_dense.align.demo import run_demo

    run_demo(args.config, args.out_dir, args.steps)


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
