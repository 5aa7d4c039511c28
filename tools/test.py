#!/usr/bin/env python
"""Evaluate a checkpoint with the config's metric: COCO/LVIS box and mask AP (detection), mIoU (segmentation),
or whatever the config's evaluator reports.

  python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out results.pkl] [--tta]
                                         [--score-thr T] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

--show-dir writes one picture per test image into DIR, drawn by the config's visualization hook: detections
(mmdet's DetVisualizationHook, boxes above --score-thr), ground-truth | prediction colour overlays (our
SegOverlayHook), or the task's own hook. Every task's hook takes ``draw`` and ``test_out_dir``; ``score_thr`` is
passed to detection hooks only.
A released detectron2 checkpoint must be converted first (tools/convert_checkpoint.py).
"""
import argparse
import numbers
import os
import sys

DEFAULT_SCORE_THR = 0.3


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir", help="folder for logs and metrics (default ./work_dirs/<config name>)")
    p.add_argument("--show-dir", help="write the test images with predictions drawn here")
    p.add_argument("--score-thr", type=float, default=None,
                   help=f"detection only: lowest score drawn with --show-dir (default {DEFAULT_SCORE_THR})")
    p.add_argument("--out", help="also dump raw predictions to this .pkl file")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: the config's tta_model/tta_pipeline")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def dump_metric(cfg, out: str, detection: bool):
    """The metric class that writes raw predictions to ``out`` (checked before anything is built)."""
    if not out.endswith((".pkl", ".pickle")):
        raise SystemExit("--out must end with .pkl")
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    if any(e.get("type") == "IoUMetric" for e in evaluators):
        # mmengine's DumpResults would pickle every image's (classes x H x W) float logits.
        raise SystemExit("--out is not available for segmentation: pass --cfg-options test_evaluator.output_dir="
                         "DIR instead (IoUMetric writes one PNG of predicted class indices per image)")
    if detection:
        from mmdet.evaluation import DumpDetResults  # masks as RLE
        return DumpDetResults
    from mmengine.evaluator import DumpResults
    return DumpResults


def main(argv=None):
    args = parse_args(argv)
    from pe_dense.engine import build_runner
    from pe_dense.engine.runner import build_config, check_checkpoint_fits, test
    from pe_dense.models.checkpoint import check_checkpoint_file

    cfg = build_config(args.config, args.cfg_options, work_dir=args.work_dir, launcher=args.launcher,
                       load_from=args.checkpoint, tta=args.tta)
    detection = cfg.get("default_scope") == "mmdet"
    if args.score_thr is not None and not detection:
        raise SystemExit(f"--score-thr applies to detection configs only; {args.config} has default_scope="
                         f"{cfg.get('default_scope')!r}: drop --score-thr")
    if args.show_dir:
        vis = cfg.get("default_hooks", {}).get("visualization")
        if vis is None:
            raise SystemExit("--show-dir needs a visualization hook in the config: default_hooks.visualization="
                             "dict(type='DetVisualizationHook') (detection) or dict(type='SegOverlayHook') "
                             "(segmentation, custom_imports 'pe_dense.heads.seg')")
        # Absolute: the hooks join test_out_dir onto work_dir/timestamp, which leaves absolute paths as they are.
        vis.update(draw=True, test_out_dir=os.path.abspath(args.show_dir))
        if detection:
            vis.update(score_thr=DEFAULT_SCORE_THR if args.score_thr is None else args.score_thr)
    dump = dump_metric(cfg, args.out, detection) if args.out else None
    check_checkpoint_file(args.checkpoint)  # missing, empty or truncated: named before anything is built
    if detection:
        from pe_dense.engine.data_checks import check_config_annotations
        check_config_annotations(cfg, ("test_dataloader",))
    runner = build_runner(cfg)
    check_checkpoint_fits(runner.model, args.checkpoint)  # mmengine would only warn
    if args.out:
        runner.test_evaluator.metrics.append(dump(out_file_path=args.out))
    metrics = test(cfg, runner)
    # numbers.Real: mmseg reports numpy float32 scalars, which are not Python floats
    print({k: round(float(v), 4) if isinstance(v, numbers.Real) else v for k, v in (metrics or {}).items()})


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
