#!/usr/bin/env python
"""Evaluate a checkpoint with the config's metric (COCO via pycocotools, LVIS via the lvis package).

  python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out results.pkl] [--tta]
                                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

--show-dir writes every test image with its detections drawn (mmdet's DetLocalVisualizer) into DIR.
A released detectron2 checkpoint must be converted first (tools/convert_checkpoint.py).
"""
import argparse
import os


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir", help="folder for logs and metrics (default ./work_dirs/<config name>)")
    p.add_argument("--show-dir", help="write images with drawn detections here")
    p.add_argument("--score-thr", type=float, default=0.3, help="lowest score drawn with --show-dir")
    p.add_argument("--out", help="also dump raw predictions to this .pkl file")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: the config's tta_model/tta_pipeline")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    from pe_dense.engine import build_runner
    from pe_dense.engine.runner import build_config, check_checkpoint_fits, test

    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"checkpoint {args.checkpoint!r} not found")
    cfg = build_config(args.config, args.cfg_options, work_dir=args.work_dir, launcher=args.launcher,
                       load_from=args.checkpoint, tta=args.tta)
    if args.show_dir:
        vis = cfg.default_hooks.get("visualization")
        if vis is None:
            raise SystemExit("--show-dir needs default_hooks.visualization=dict(type='DetVisualizationHook')")
        # An absolute path: mmdet joins test_out_dir onto work_dir/timestamp, which leaves absolute paths as they are.
        vis.update(draw=True, test_out_dir=os.path.abspath(args.show_dir), score_thr=args.score_thr)
    runner = build_runner(cfg)
    check_checkpoint_fits(runner.model, args.checkpoint)  # mmengine would only warn
    if args.out:
        from mmdet.evaluation import DumpDetResults
        if not args.out.endswith((".pkl", ".pickle")):
            raise SystemExit("--out must end with .pkl")
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = test(cfg, runner)
    print({k: round(float(v), 4) if isinstance(v, float) else v for k, v in (metrics or {}).items()})


if __name__ == "__main__":
    main()
