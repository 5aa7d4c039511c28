#!/usr/bin/env python
"""Compute a probe config's frozen-backbone features once, for N pre-drawn augmented views per training image.

  python tools/cache_features.py CONFIG [--views N] [--cfg-options feature_cache.dir=DIR ...]
                                        [--max-shards K] [--overwrite] [--verify] [--show]

Then train from the cache with the same config and options (the config needs runner_type='FeatureCacheRunner'):
  python tools/train.py CONFIG --cfg-options feature_cache.dir=DIR feature_cache.num_views=N

Interrupted or time-limited (--max-shards) runs resume where they stopped when run again; a cache built for another
model, checkpoint, layer set, input size, preprocessing, dataset, pipeline or seed is refused (--overwrite rebuilds).
"""
import argparse
import logging
import sys


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="probe config (with feature_cache=dict(dir=...) or --cfg-options feature_cache.dir=)")
    p.add_argument("--views", type=int, help="augmented views per image (feature_cache.num_views)")
    p.add_argument("--max-shards", type=int, help="write at most this many shards, then stop (rerun to continue)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing cache in the directory first")
    p.add_argument("--verify", action="store_true", help="re-hash listed shards and recompute damaged ones")
    p.add_argument("--show", action="store_true", help="print the cache's key and shard count, compute nothing")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.logging import print_log

    from pe_dense.engine.runner import build_config
    from pe_dense.features import build_feature_cache
    from pe_dense.features.builder import describe

    options = dict(args.cfg_options or {})
    if args.views is not None:
        options["feature_cache.num_views"] = args.views
    cfg = build_config(args.config, options)
    if args.show:
        print_log(describe(cfg.feature_cache.dir), logger="current")
        return
    logging.getLogger("pe_dense.features").setLevel(logging.INFO)
    logging.basicConfig(format="%(asctime)s %(message)s")
    report = build_feature_cache(cfg, overwrite=args.overwrite, max_new_shards=args.max_shards, verify=args.verify)
    print_log(f"feature cache {report.cache_dir}: wrote {report.shards_written} shards, "
              f"{report.shards_total - report.shards_remaining}/{report.shards_total} complete"
              + (" (rerun to continue)" if report.shards_remaining else ""), logger="current")


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
