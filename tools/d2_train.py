#!/usr/bin/env python
"""Train or evaluate a detectron2 LazyConfig (configs/d2/): detectron2's lazyconfig_train_net pattern.

  python tools/d2_train.py --config-file configs/d2/mask_rcnn_pe_g14_coco.py --num-gpus 8
  python tools/d2_train.py --config-file configs/d2/mask_rcnn_pe_g14_coco.py --eval-only \
      train.init_checkpoint=mask_rcnn_PEspatial_G_coco36ep.pth        # the released file, loaded strictly
  python tools/d2_train.py --config-file CFG --resume                  # continue from output_dir/last_checkpoint
  python tools/d2_train.py --config-file CFG --num-gpus 8 --num-machines 2 --machine-rank R --dist-url tcp://H:P
  python tools/d2_train.py --config-file configs/d2/mask_rcnn_pe_t16_demo.py train.device=cpu   # bundled photos

Trailing KEY=VALUE pairs override config entries (detectron2's LazyConfig.apply_overrides). Needs detectron2
(the [d2] extra). On CPU, processes talk over gloo; AMP (CUDA-only in detectron2) is switched off with a warning.
"""
import logging
import os
import sys

logger = logging.getLogger("pe_dense.d2_train")


def _writers(cfg):
    """detectron2's default writers, without TensorBoard when its package is absent (not a detectron2 need)."""
    import importlib.util

    from detectron2.engine import default_writers
    from detectron2.utils.events import CommonMetricPrinter, JSONWriter
    if importlib.util.find_spec("tensorboard") is not None:
        return default_writers(cfg.train.output_dir, cfg.train.max_iter)
    return [CommonMetricPrinter(cfg.train.max_iter), JSONWriter(os.path.join(cfg.train.output_dir, "metrics.json"))]


def do_test(cfg, model):
    """Run ``dataloader.evaluator`` on ``dataloader.test``; returns its results (empty without an evaluator)."""
    from detectron2.config import instantiate
    from detectron2.evaluation import inference_on_dataset, print_csv_format
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def _ddp(model, cfg, **ddp):
    """detectron2's ``create_ddp_model`` always passes ``device_ids=[local rank]``, which DDP refuses for CPU
    modules; on CPU (gloo) wrap without device ids (no fp16 gradient compression there)."""
    from detectron2.engine import create_ddp_model
    from detectron2.utils import comm
    if comm.get_world_size() == 1 or str(cfg.train.device).startswith("cuda"):
        return create_ddp_model(model, **ddp)
    from torch.nn.parallel import DistributedDataParallel
    ddp.pop("fp16_compression", None)
    return DistributedDataParallel(model, **ddp)


def do_train(args, cfg):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate
    from detectron2.engine import AMPTrainer, SimpleTrainer, hooks
    from detectron2.utils import comm

    model = instantiate(cfg.model).to(cfg.train.device)
    logger.info("model:\n%s", model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = _ddp(model, cfg, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(_writers(cfg), period=cfg.train.log_period) if comm.is_main_process() else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def _check_device(cfg):
    import torch
    if str(cfg.train.device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("train.device is 'cuda' but no GPU is visible: add train.device=cpu to the command line")
    if not str(cfg.train.device).startswith("cuda") and cfg.train.amp.enabled:
        logger.warning("train.amp.enabled=True but detectron2's AMP is CUDA-only: training in float32 on %s",
                       cfg.train.device)
        cfg.train.amp.enabled = False


def main(args):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import default_setup

    from pe_dense.d2 import load_detector_checkpoint

    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    _check_device(cfg)
    if args.eval_only:
        model = instantiate(cfg.model).to(cfg.train.device)
        model = _ddp(model, cfg)
        load_detector_checkpoint(model, cfg.train.init_checkpoint)  # strict: every key used, none missing
        return do_test(cfg, model)
    do_train(args, cfg)
    return None


def parse_args(argv=None):
    """detectron2's launcher flags: --config-file, --eval-only, --resume, --num-gpus, --num-machines,
    --machine-rank, --dist-url, then KEY=VALUE config overrides."""
    import pe_dense.d2  # noqa: F401, I001  (first: without detectron2, an ImportError naming the install step)
    from detectron2.engine import default_argument_parser
    return default_argument_parser(epilog=__doc__).parse_args(argv)


def cli(argv=None):
    from detectron2.engine import launch
    args = parse_args(argv)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(cli))
