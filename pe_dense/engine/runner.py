"""Config assembly shared by ``tools/train.py`` and ``tools/test.py`` (mmdet's tools, plus our options).

Beyond mmdet's tools: ``data_root=...`` in ``--cfg-options`` re-roots every path of the config that starts with the
config's own ``data_root`` (datasets and evaluator annotation files alike); activation checkpointing and FSDP
(mmengine ``FlexibleRunner`` + ``FSDPStrategy``) as switches; mmengine checkpoints load under torch's
weights-only default (:func:`allow_mmengine_checkpoint_types`).
"""
from __future__ import annotations

import itertools
import os
import os.path as osp
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from mmengine.config import Config, ConfigDict
from mmengine.registry import FUNCTIONS

from pe_dense.errors import PEDenseError

from .checkpoint_io import allow_mmengine_checkpoint_types
from .distributed import setup_distributed
from .fsdp import PEFSDPStrategy  # noqa: F401  registers the strategy --strategy fsdp selects
from .resume_checks import check_resume_checkpoint

DATA_ENV = "PE_DENSE_DATA"


def pe_block_wrap_policy(module, recurse: bool, nonwrapped_numel: int = 0, **kwargs) -> bool:
    """FSDP auto-wrap policy: one FSDP unit per PE transformer block (the rest goes into the root unit)."""
    if recurse:
        return True
    from pe_dense.models.blocks import PEBlock
    return isinstance(module, PEBlock)


FUNCTIONS.register_module(module=pe_block_wrap_policy)


def _reroot(node: Any, old: str, new: str) -> Any:
    """Replace the prefix ``old`` by ``new`` in every string of a nested config."""
    if isinstance(node, str):
        return new + node[len(old):] if node.startswith(old) else node
    if isinstance(node, dict):
        for k in list(node.keys()):
            node[k] = _reroot(node[k], old, new)
        return node
    if isinstance(node, list):
        return [_reroot(v, old, new) for v in node]
    if isinstance(node, tuple):
        return tuple(_reroot(v, old, new) for v in node)
    return node


def build_config(config: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                 launcher: str = "none", amp: bool = False, resume: Optional[str] = None,
                 load_from: Optional[str] = None, grad_checkpointing: bool = False, strategy: str = "default",
                 auto_scale_lr: bool = False, tta: bool = False) -> Config:
    """Load ``config`` and apply the command-line switches, in mmdet's priority order (CLI > file)."""
    if not osp.isfile(config):
        raise FileNotFoundError(f"config {config!r} not found (paths are relative to the current directory "
                                f"{os.getcwd()!r})")
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    options = dict(cfg_options or {})
    old_root, new_root = cfg.get("data_root"), options.get("data_root")
    if options:
        cfg.merge_from_dict(options)
    if isinstance(old_root, str) and isinstance(new_root, str) and new_root != old_root:
        if old_root.endswith("/") and not new_root.endswith("/"):
            new_root += "/"
        for key in list(cfg.keys()):
            if key != "data_root":
                cfg[key] = _reroot(cfg[key], old_root, new_root)
    if cfg.get("runner_type") == "CustomCocoRunner":  # configs/finetune: data keys and classes from the command line
        from .custom_coco import resolve_custom_dataset
        resolve_custom_dataset(cfg, missing_ok=True)

    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(config))[0])

    if amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if auto_scale_lr:
        if "auto_scale_lr" not in cfg or "base_batch_size" not in cfg.auto_scale_lr:
            raise ValueError("--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config")
        cfg.auto_scale_lr.enable = True
    if resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    if load_from is not None:
        cfg.load_from = load_from
    if grad_checkpointing:
        cfg.model.backbone.grad_checkpointing = True
    if strategy == "fsdp":
        # FlexibleRunner builds the optimizer through the strategy; the config's optim_wrapper is reused.
        cfg.runner_type = "FlexibleRunner"
        # state_dict_cfg='full': checkpoints are single files gathered on rank 0 (mmengine's default 'local'
        # writes one shard per rank into a folder), so --resume works with any world size or without FSDP.
        # PEFSDPStrategy: mmengine's FSDPStrategy, clipping by the full gradient's norm and resumable (fsdp.py).
        cfg.strategy = ConfigDict(type="PEFSDPStrategy", state_dict_cfg="full",
                                  model_wrapper=dict(auto_wrap_policy=dict(type="pe_block_wrap_policy")))
    elif strategy != "default":
        raise ValueError(f"unknown strategy {strategy!r}; use 'default' (DDP when distributed) or 'fsdp'")
    if tta:
        if "tta_model" not in cfg or "tta_pipeline" not in cfg:
            raise ValueError(f"--tta needs tta_model and tta_pipeline in the config; {config} has "
                             f"{[k for k in ('tta_model', 'tta_pipeline') if k in cfg] or 'neither'}")
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        dataset = cfg.test_dataloader.dataset
        while "dataset" in dataset:
            dataset = dataset.dataset
        dataset.pipeline = cfg.tta_pipeline
    return cfg


def check_data_root(cfg: Config) -> None:
    """Fail early, naming both ways to set it, when the config's ``data_root`` does not exist."""
    root = cfg.get("data_root")
    if isinstance(root, str) and "://" not in root and not osp.isdir(root):
        raise FileNotFoundError(
            f"data_root {root!r} does not exist. Point {DATA_ENV} at the folder holding the datasets "
            f"(e.g. {DATA_ENV}=/datasets, which contains coco/ and lvis_v1/) or pass "
            "--cfg-options data_root=/path/to/this/dataset/")


def pick_threads(requested: Optional[int] = None) -> Optional[int]:
    """CPU threads for the demos: the requested count, else 1 when the CPU is already busy (oversubscribed OpenMP
    threads crawl), else None (torch's default)."""
    if requested:
        return requested
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        busy = False
    return 1 if busy else None


_RUNNERS_BUILT = itertools.count(1)


def _name_later_runs(cfg: Config) -> None:
    """mmengine names a run's logger, message hub, visualizer and default scope ``<config>_<timestamp>`` (seconds)
    and hands back the existing instance for a name it has seen: a second runner built in the same process within
    the same second would log through the first one's handlers (its log file, a stream since closed) and take its
    scope. The first runner keeps mmengine's name; later ones get ``<config>_run<n>`` (the same on every rank)."""
    n = next(_RUNNERS_BUILT)
    if n > 1 and not cfg.get("experiment_name"):
        cfg.experiment_name = f"{osp.splitext(osp.basename(cfg.filename or 'config'))[0]}_run{n}"


def build_runner(cfg: Config):
    """Runner (or the config's ``runner_type``) from a finished config; mmengine checkpoints made loadable."""
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    allow_mmengine_checkpoint_types()
    setup_cache_size_limit_of_dynamo()
    check_data_root(cfg)
    setup_distributed(cfg)  # our process group (gloo without GPUs) before mmengine's CUDA-only init_dist
    check_resume_checkpoint(cfg)  # a truncated checkpoint is named with the one to resume from instead
    _name_later_runs(cfg)
    if "runner_type" in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def _dataset_summary(cfg: Config) -> str:
    parts = []
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        ds = (cfg.get(name) or {}).get("dataset", {})
        while isinstance(ds, dict) and "dataset" in ds:
            ds = ds["dataset"]
        if isinstance(ds, dict) and ds:
            parts.append(f"{name}: ann_file={ds.get('ann_file')!r} in {ds.get('data_root')!r}, "
                         f"filter_cfg={ds.get('filter_cfg')}")
    return "; ".join(parts)


@contextmanager
def explain_errors(cfg: Config) -> Iterator[None]:
    """Re-raise known obscure failures of mmengine/mmdet with the cause and the fix."""
    try:
        yield
    except ValueError as err:
        if "need at least one array to concatenate" in str(err):
            raise ValueError(
                "a dataset has no samples (mmengine cannot serialise an empty annotation list). "
                f"{_dataset_summary(cfg)}. Check that the annotation file lists images with annotations; "
                "filter_cfg=dict(filter_empty_gt=True) drops images whose annotation list is empty") from err
        raise


def train(cfg: Config):
    """Build the runner and train; returns the runner."""
    runner = build_runner(cfg)
    with explain_errors(cfg):
        runner.train()
    return runner


def test(cfg: Config, runner=None) -> dict:
    """Evaluate with the config's test loop (building the runner unless given); returns the metrics."""
    runner = runner or build_runner(cfg)
    with explain_errors(cfg):
        return runner.test()


class CheckpointMismatch(PEDenseError, ValueError):
    """A checkpoint whose keys or shapes do not fit the config's model (tools print it as one error)."""


def check_checkpoint_fits(model, path: str, max_listed: int = 8) -> None:
    """Raise, naming the problem and the fix, unless ``path`` holds ``model``'s parameters with their shapes and
    nothing else (missing buffers only warn).

    mmengine's ``load_from`` only warns about missing or unexpected keys, so evaluating a checkpoint of another
    model (a released detectron2/DETA file, another size) would silently score random heads.
    """
    from pe_dense.models.checkpoint import torch_load_checked

    allow_mmengine_checkpoint_types()
    obj = torch_load_checked(path, mmap=True)  # truncated/foreign/untrusted files: named errors
    sd = obj.get("state_dict", obj.get("model", obj)) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict):
        raise CheckpointMismatch(f"{path} holds no state dict (got {type(sd).__name__})")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    while hasattr(model, "module"):  # DDP / TTA wrappers
        model = model.module
    own = model.state_dict()
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(k for k in set(own) - set(sd) if k in params)
    missing_buffers = sorted(k for k in set(own) - set(sd) if k not in params)
    if missing_buffers:
        from mmengine.logging import print_log
        print_log(f"{path} lacks buffers {missing_buffers[:max_listed]}: they keep their initial values",
                  logger="current", level=30)
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in set(sd) & set(own)
                    if hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape))
    if not (missing or unexpected or shapes):
        return
    hint = "build the config the checkpoint was trained with"
    if any(k.startswith(("backbone.simfp_", "roi_heads.", "proposal_generator.")) for k in sd):
        hint = ("this is a detectron2 checkpoint: convert it first with tools/convert_checkpoint.py SRC DST "
                "--kind d2-mask-rcnn --trusted")
    elif any(k.startswith("backbone.0.body.") for k in sd):
        hint = "this is a DETA checkpoint: convert it (--kind deta) and use a DETA config"
    lines = [f"checkpoint {path} does not fit the model of this config ({hint}):"]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped (file vs model)", shapes)):
        if keys:
            more = f" ... (+{len(keys) - max_listed})" if len(keys) > max_listed else ""
            lines.append(f"  {label} ({len(keys)}): {', '.join(keys[:max_listed])}{more}")
    raise CheckpointMismatch("\n".join(lines))
