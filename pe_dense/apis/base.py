"""What Detector, Segmenter and DepthEstimator share: config + checkpoint -> an OpenMMLab inferencer whose
pipeline and model do the work, cast once to the requested precision, run in batches.

The inferencer (mmdet's ``DetInferencer``, mmseg's ``MMSegInferencer``) builds the model, loads the checkpoint and
turns paths/arrays into model inputs with the config's own test pipeline; ``model.test_step`` returns predictions
in original pixels. We add: class names from the checkpoint or else the config (not COCO's/Cityscapes' by
default), a checkpoint that does not fit the config is an error (mmengine only warns), precision, plain results.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterator, List, Optional, Tuple

import torch

from .inputs import normalise_inputs, pipeline_item
from .precision import cast_weights, resolve_dtype

logger = logging.getLogger(__name__)


def load_config(config: Any, cfg_options: Optional[dict] = None):
    """An mmengine Config from a path (custom_imports honoured) or a Config, with ``cfg_options`` merged."""
    from mmengine.config import Config

    if isinstance(config, (str, os.PathLike)):
        from pe_dense.engine.runner import build_config

        cfg = build_config(os.fspath(config), cfg_options)  # data_root=... re-roots every dataset path
    else:
        cfg = Config(dict(config)) if not isinstance(config, Config) else config.copy()
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    if cfg.model.get("module") is not None:
        raise ValueError("TTA-wrapped configs are not supported by the one-call API: pass the plain config")
    return cfg


def dataset_metainfo(cfg) -> dict:
    """The test dataset's metainfo (class names, palette) without reading its annotation file."""
    import copy

    from mmengine.registry import DATASETS

    ds = copy.deepcopy(cfg.test_dataloader.dataset)
    while "dataset" in ds:  # wrappers (ConcatDataset, RepeatDataset, ...)
        ds = ds["dataset"]
    ds["lazy_init"] = True
    return dict(DATASETS.build(ds).metainfo)


def meta_from_checkpoint(checkpoint: Optional[dict]) -> dict:
    meta = (checkpoint or {}).get("meta", {}) or {}
    found = {k.lower(): v for k, v in (meta.get("dataset_meta") or {}).items()}
    if "classes" not in found and "CLASSES" in meta:
        found["classes"] = meta["CLASSES"]
    return found


class MMPredictor:
    """Base of the OpenMMLab-backed predictors; subclasses set ``_build_inferencer`` and ``_convert``."""

    def __init__(self, config: Any, checkpoint: Optional[str] = None, device: str = "cpu",
                 precision: str = "fp32", batch_size: int = 1, cfg_options: Optional[dict] = None):
        from pe_dense.engine.checkpoint_io import allow_mmengine_checkpoint_types
        from pe_dense.engine.runner import check_checkpoint_fits

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if checkpoint is not None and not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"checkpoint {checkpoint} not found; pass checkpoint=None for random weights")
        self.dtype = resolve_dtype(precision)
        self.batch_size = batch_size
        self.cfg = load_config(config, cfg_options)
        allow_mmengine_checkpoint_types()
        self._inferencer = self._build_inferencer(self.cfg, checkpoint, device)
        self.model = self._inferencer.model
        if checkpoint is not None:
            check_checkpoint_fits(self.model, checkpoint)
        else:  # the model's own random init: some parameters (DETA's level_embed) are uninitialised memory until then
            logger.warning("no checkpoint: %s runs with random weights", type(self.model).__name__)
            self.model.init_weights()
        cast_weights(self.model, self.dtype)
        self.dataset_meta = dict(self.model.dataset_meta)

    def _build_inferencer(self, cfg, checkpoint: Optional[str], device: str):
        raise NotImplementedError

    def _convert(self, pred, path: Optional[str], image):
        raise NotImplementedError

    @property
    def class_names(self) -> List[str]:
        return list(self.dataset_meta.get("classes") or [])

    def __call__(self, inputs: Any, batch_size: Optional[int] = None):
        """One image (path or RGB array) -> one result; a list, folder or glob -> a list of results."""
        items, single = normalise_inputs(inputs)
        results = list(self.iter_results(items, batch_size))
        return results[0] if single else results

    def iter_results(self, items: List[Tuple[str, Any]], batch_size: Optional[int] = None) -> Iterator:
        """Results of ``normalise_inputs`` items, a batch at a time (for progress bars and long lists)."""
        bs = batch_size or self.batch_size
        inf = self._inferencer
        for start in range(0, len(items), bs):
            chunk = items[start:start + bs]
            data = inf.collate_fn([inf.pipeline(pipeline_item(x)) for _, x in chunk])
            with torch.no_grad():
                preds = self.model.test_step(data)
            for (_, x), pred in zip(chunk, preds, strict=True):
                yield self._convert(pred, x if isinstance(x, str) else None, None if isinstance(x, str) else x)
