#!/usr/bin/env python
"""Train a detector from a config on mmengine's Runner (mmdet's tools/train.py, plus our switches).

  python tools/train.py CONFIG [--work-dir DIR] [--amp] [--resume [CKPT]] [--cfg-options k=v ...]
                               [--launcher none|pytorch|slurm] [--grad-checkpointing] [--strategy default|fsdp]

Many GPUs / nodes, same command:
  torchrun --nnodes N --nproc-per-node 8 tools/train.py CONFIG --launcher pytorch
  srun -N 8 --ntasks-per-node 8 python tools/train.py CONFIG --launcher slurm
Data: export PE_DENSE_DATA=/datasets (holding coco/, lvis_v1/) or --cfg-options data_root=/datasets/coco/.
For G: --grad-checkpointing (activation checkpointing per block, as the recipe) and/or --strategy fsdp
(mmengine FlexibleRunner + FSDPStrategy, one FSDP unit per PE block).
"""
import argparse
import os
import sys


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="config file")
    p.add_argument("--work-dir", help="folder for logs and checkpoints (default ./work_dirs/<config name>)")
    p.add_argument("--amp", action="store_true", help="automatic mixed precision (AmpOptimWrapper)")
    p.add_argument("--auto-scale-lr", action="store_true", help="scale lr linearly from auto_scale_lr.base_batch_size")
    p.add_argument("--resume", nargs="?", type=str, const="auto",
                   help="resume from CKPT, or without a value from the latest checkpoint in the work dir")
    p.add_argument("--load-from", help="initialise the whole detector from a checkpoint (no optimizer state)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute backbone blocks in backward")
    p.add_argument("--strategy", choices=["default", "fsdp"], default="default",
                   help="default: DDP when distributed; fsdp: shard parameters/gradients/optimizer state")
    p.add_argument("--cfg-options", nargs="+", action=DictAction,
                   help="override config entries, key=value (e.g. data_root=/data/coco/ train_dataloader.batch_size=2)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    from pe_dense.engine.runner import build_config, train
    from pe_dense.models.checkpoint import check_checkpoint_file

    for path in (args.load_from, None if args.resume == "auto" else args.resume):
        if path:
            check_checkpoint_file(path)  # missing, empty or truncated: named before anything is built
    cfg = build_config(args.config, args.cfg_options, work_dir=args.work_dir, launcher=args.launcher,
                       amp=args.amp, resume=args.resume, load_from=args.load_from,
                       grad_checkpointing=args.grad_checkpointing, strategy=args.strategy,
                       auto_scale_lr=args.auto_scale_lr)
    if cfg.get("default_scope") == "mmdet":
        from pe_dense.engine.data_checks import check_config_annotations
        check_config_annotations(cfg, ("train_dataloader", "val_dataloader"))
    train(cfg)


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
