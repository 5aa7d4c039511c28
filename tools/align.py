#!/usr/bin/env python
"""SAM 2-guided spatial alignment (PE-Core -> PE-Spatial) or G -> T/S/B/L distillation, from a config.

  python tools/align.py configs/align/align_pe_spatial_g14.py [--work-dir DIR] [--resume] [--max-steps N]
                        [--cfg-options student.checkpoint=PE-Core-G14-448.pt data.root=/data/images ...]
  torchrun --nproc-per-node 8 tools/align.py CONFIG --launcher pytorch       (DDP; gloo on CPU, nccl on GPU)
  srun --ntasks 8 python tools/align.py CONFIG --launcher slurm --strategy fsdp    (FSDP2, student sharded per block)

--resume continues exactly from WORK_DIR/latest.pth (model, optimizer, schedule, RNG, data and cache position).
The trained student is written to WORK_DIR/student.pt in the official PE layout (loads into PEVisionTransformer,
PEBackbone, and timm through tools/convert_checkpoint.py).
"""
import argparse
import sys


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--work-dir", help="logs, latest.pth and student.pt (default: the config's work_dir)")
    p.add_argument("--resume", action="store_true", help="continue from WORK_DIR/latest.pth if present")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (rerun with --resume to continue)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (settings.amp=True)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    p.add_argument("--strategy", choices=["ddp", "fsdp"], help="how ranks share the student (default: the config's "
                   "'strategy', else ddp); checkpoints hold the full state dict either way")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pe_dense.align.run import load_config, train_from_config
    from pe_dense.engine.distributed import init_distributed

    options = dict(args.cfg_options or {})
    if args.amp:
        options["settings.amp"] = True
    if args.strategy:
        options["strategy"] = args.strategy
    cfg = load_config(args.config, options, args.work_dir)
    init_distributed(args.launcher)
    train_from_config(cfg, resume=args.resume, max_steps=args.max_steps)


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
