"""Training hooks our base configs add through ``custom_hooks``.

- :class:`PreflightHook`: fail before the first iteration, with the fix in the message, when the backbone and
  neck disagree (``pe_dense.mm.check_pyramid_contract``) or a dataset ended up empty after filtering.
- :class:`IterationSeedHook`: seed the generators from the iteration number, so a resumed run draws the same
  drop-path masks and RoI samples as an uninterrupted one.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _dataset_description(dataset) -> str:
    inner = dataset
    while hasattr(inner, "dataset"):  # RepeatDataset, ClassBalancedDataset, ...
        inner = inner.dataset
    ann = getattr(inner, "ann_file", "?")
    filt = getattr(inner, "filter_cfg", None)
    return f"{type(inner).__name__}(ann_file={ann!r}, filter_cfg={filt})"


@HOOKS.register_module()
class PreflightHook(Hook):
    """Checks that need the built model and datasets, run once before training or testing starts."""

    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        model = _unwrap(runner.model)
        backbone, neck = getattr(model, "backbone", None), getattr(model, "neck", None)
        if backbone is not None and neck is not None:
            from pe_dense.mm import check_pyramid_contract
            check_pyramid_contract(backbone, neck)

    def before_train(self, runner) -> None:
        self._check_not_empty(runner.train_dataloader.dataset, "train_dataloader")

    def before_val(self, runner) -> None:
        self._check_not_empty(runner.val_dataloader.dataset, "val_dataloader")

    def before_test(self, runner) -> None:
        self._check_not_empty(runner.test_dataloader.dataset, "test_dataloader")

    @staticmethod
    def _check_not_empty(dataset, name: str) -> None:
        if len(dataset) == 0:
            raise ValueError(
                f"{name} has no samples: {_dataset_description(dataset)}. Check that ann_file lists images and "
                "that data_root/data_prefix point at them; in training, filter_cfg=dict(filter_empty_gt=True) "
                "drops images without annotations, so a file with empty annotation lists ends up empty")


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Re-seed torch (CPU and CUDA), numpy and python ``random`` before every training iteration from
    ``(runner.seed, iteration, rank)``, so model-side random draws (drop path, RoI sampling, federated-loss classes)
    depend only on the iteration: a resumed run draws exactly what an uninterrupted one would.

    mmengine does not store generator states in checkpoints, and saving them would not suffice: between the
    checkpoint and the next iteration the data loader also draws from the global generator (a new iterator's base
    seed). The data side is exact when ``num_workers >= 1``: mmengine seeds workers from the config seed and replays
    the loader for the iterations already done when resuming. With ``num_workers=0`` only pipelines without random
    transforms resume exactly.
    """

    priority = "VERY_HIGH"

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        from mmengine.dist import get_rank

        base = runner.seed if runner.seed is not None else 0
        randomness = getattr(runner, "_randomness_cfg", None) or {}
        rank = get_rank() if randomness.get("diff_rank_seed", False) else 0
        seed = (base * 1_000_003 + runner.iter * 100_003 + rank) % (2 ** 32)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # also seeds every CUDA device


# Earlier name of the same hook (configs/_base_/deta_pe.py uses it).
HOOKS.register_module(name="RNGStateHook", module=IterationSeedHook)
