#!/usr/bin/env python
"""Compute the SAM 2 targets of an alignment config's training views once (sharded, checksummed, resumable).

  python tools/cache_sam_targets.py configs/align/align_pe_spatial_g14.py --steps 1000 \
      --cfg-options sam_cache.dir=/cache/sam sam.checkpoint=sam2.1_hiera_large.pt data.root=/data/images [--verify]

Then train from it with the same config and options (sam_cache.dir set): tools/align.py CONFIG --cfg-options ...
The cache holds the views of the first --steps optimizer steps (steps x world size x accum_steps x batch_size
samples); it is keyed by SAM, its options, the image list, the augmentation settings and seed, and every sample's view
(image index, crop, flip, colour) is checked on read. Storage: sam_cache.dtype=float16 (default) or int8 (half the
size: per-token scale, dequantised on read). An interrupted build (even kill -9) resumes where it stopped and ends
byte-identical to an uninterrupted one; a truncated shard is named and recomputed. One build per directory.
"""
import argparse
import sys


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps of the run to cover")
    p.add_argument("--world-size", type=int, default=1, help="ranks of the training run (samples per step scale)")
    p.add_argument("--verify", action="store_true", help="re-hash every shard afterwards")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pe_dense.align.run import cache_from_config, load_config

    cache_from_config(load_config(args.config, args.cfg_options), args.steps, args.world_size, verify=args.verify)


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
