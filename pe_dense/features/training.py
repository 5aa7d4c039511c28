"""Training a probe from the feature cache with mmengine's runner: the ``feature_cache`` switch.

With ``runner_type='FeatureCacheRunner'`` and ``feature_cache=dict(dir=...)`` in a config, ``tools/train.py CONFIG``
trains from the cache. :func:`apply_feature_cache` rewrites only the training side of the config:

- the train dataset becomes :class:`FeatureCacheDataset` (memory-mapped features + the augmented labels), sampled
  by :class:`~pe_dense.features.views.ViewSampler` (epoch ``e`` -> view ``e % N``);
- the segmentor becomes its ``FeatureCache<type>`` subclass (made and registered on demand), whose ``extract_feat``
  skips the backbone when it is given features instead of images; the backbone stays in the model (same parameter
  names, so checkpoints of cached and image training are interchangeable, and validation/test run on images);
- the data preprocessor is wrapped by :class:`FeatureCacheDataPreprocessor`, which stacks cached features and hands
  everything else to the configured preprocessor.

The decode head is the configured module in both paths. ``feature_cache.source='images'`` instead trains on images
with the same pre-drawn views (the reference the cached path is tested against).
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import Dict

import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor
from mmengine.registry import DATASETS, RUNNERS
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from .key import CacheSettings, cache_key, check_key
from .store import CacheDir, FeatureCacheError, shard_name
from .views import SeededViewDataset, dataset_image_list

FEATURES = "features"


def _tuples(v):
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuples(x) for k, x in v.items()}
    return v


@DATASETS.register_module()
class FeatureCacheDataset:
    """The cached views of a config's training set: ``{'features': {'map0': (C, h, w), ...}, 'data_samples'}``.

    Index ``k`` is view ``k // num_images`` of image ``k % num_images`` (as :class:`SeededViewDataset`). Opening
    checks the key against the config (``key_cfg``: the config's ``model``, ``randomness``, ``feature_cache`` and
    original ``train_dataloader.dataset``), that every shard of views ``0..num_views-1`` is listed, present and of
    the recorded size; shards are memory-mapped on first use, so a sample reads only its own bytes.
    """

    def __init__(self, cache_dir: str, num_views: int, key_cfg: dict, config_name: str = "CONFIG"):
        from mmengine.config import ConfigDict

        key_cfg = ConfigDict(key_cfg)
        settings = CacheSettings.from_cfg(key_cfg)
        self.store = CacheDir(cache_dir)
        rebuild = f"python tools/cache_features.py {config_name} --cfg-options feature_cache.dir={cache_dir}"
        self.rebuild_hint = f"Recompute it with: {rebuild} (it rebuilds missing or damaged shards and resumes)"
        manifest = self.store.read_manifest()
        if manifest is None:
            raise FeatureCacheError(f"no feature cache in {self.store.root}: build it first with {rebuild} "
                                    f"--views {num_views}")
        source = SeededViewDataset(key_cfg.train_dataloader.dataset, num_views, settings.aug_seed)
        check_key(manifest["key"], cache_key(key_cfg, dataset_image_list(source), settings), self.store.root,
                  config_name)
        self.metainfo = source.metainfo
        self.num_images, self.num_views = manifest["num_images"], int(num_views)
        self.shard_size = manifest["shard_size"]
        parts = (self.num_images + self.shard_size - 1) // self.shard_size
        needed = [shard_name(v, p) for v in range(self.num_views) for p in range(parts)]
        missing = [n for n in needed if n not in manifest["shards"]]
        if missing:
            raise FeatureCacheError(
                f"feature cache {self.store.root} is incomplete: {len(needed) - len(missing)} of the {len(needed)} "
                f"shards for {self.num_views} views are done (first missing: {missing[0]}). Finish it with: "
                f"{rebuild} --views {self.num_views} (it resumes)")
        for name in needed:
            problem = self.store.shard_problem(name, manifest["shards"][name])
            if problem:
                raise FeatureCacheError(f"{problem}. {self.rebuild_hint}")
        self.entries = manifest["shards"]
        self._open: Dict[str, tuple] = {}

    def __len__(self) -> int:
        return self.num_images * self.num_views

    def _shard(self, name: str):
        if name not in self._open:
            self._open[name] = self.store.open_shard(name, self.entries[name], self.rebuild_hint)
        return self._open[name]

    def __getitem__(self, k: int) -> dict:
        view, image = divmod(int(k), self.num_images)
        part, row = divmod(image, self.shard_size)
        records, metas = self._shard(shard_name(view, part))
        rec = records[row]
        features, sample = {}, SegDataSample(metainfo=_tuples(metas[row]))
        for name in records.dtype.names:
            a = np.array(rec[name])  # copies this sample's bytes out of the memory map
            if name.startswith("gt_"):
                a = a.astype(np.int64) if np.issubdtype(a.dtype, np.integer) else a.astype(np.float32)
                sample.set_data({name: PixelData(data=torch.from_numpy(a))})
            else:
                features[name] = torch.from_numpy(a)
        return {FEATURES: features, "data_samples": sample}


@MODELS.register_module()
class FeatureCacheDataPreprocessor(BaseDataPreprocessor):
    """Stacks cached features (a batch with a ``features`` entry) into the backbone's output structure, float32;
    any other batch (images: validation, test, image training) goes to the configured ``preprocessor``."""

    def __init__(self, preprocessor: dict):
        super().__init__()
        self.preprocessor = MODELS.build(preprocessor)

    def forward(self, data: dict, training: bool = False) -> dict:
        if FEATURES not in data:
            return self.preprocessor(data, training)
        data = self.cast_data(data)
        feats = data[FEATURES]
        out = []
        for i in range(sum(1 for k in feats if k.startswith("map"))):
            m = torch.stack(feats[f"map{i}"]).float()
            out.append((m, torch.stack(feats[f"cls{i}"]).float()) if f"cls{i}" in feats else m)
        return dict(inputs=tuple(out), data_samples=data["data_samples"])


class FeatureCacheMixin:
    """``extract_feat`` that takes cached backbone outputs (a tuple) instead of images (a tensor)."""

    def extract_feat(self, inputs, *args, **kwargs):
        if isinstance(inputs, torch.Tensor):
            return super().extract_feat(inputs, *args, **kwargs)
        return self.neck(inputs) if self.with_neck else inputs


PREFIX = "FeatureCache"


def cached_segmentor_type(type_name: str) -> str:
    """Register (once) and return ``FeatureCache<type_name>``: the config's segmentor class with
    :class:`FeatureCacheMixin` in front. Works for every mmseg ``EncoderDecoder`` subclass (``DepthEstimator`` and
    ours included), so the cached model is the configured one in everything but ``extract_feat``."""
    base_name = type_name[len(PREFIX):] if type_name.startswith(PREFIX) else type_name
    name = PREFIX + base_name
    if name not in MODELS.module_dict:
        base = MODELS.get(base_name)
        if not (isinstance(base, type) and issubclass(base, EncoderDecoder)):
            raise ValueError(f"feature_cache needs an mmseg EncoderDecoder-style segmentor (backbone -> neck -> "
                             f"heads), not model.type={type_name!r}: subclass mmseg's EncoderDecoder, or train it "
                             "without feature_cache")
        MODELS.register_module(name=name, module=type(name, (FeatureCacheMixin, base), {"__module__": __name__}))
    return name


def apply_feature_cache(cfg):
    """A copy of ``cfg`` that trains from its feature cache (or on its pre-drawn views with ``source='images'``);
    ``cfg`` itself when ``feature_cache`` is absent or has neither ``dir`` nor ``source='images'``."""
    settings = CacheSettings.from_cfg(cfg)
    if not settings.enabled:
        return cfg
    cfg = copy.deepcopy(cfg)
    loader = cfg.train_dataloader
    source = loader.dataset
    if source.get("type") in ("FeatureCacheDataset", "SeededViewDataset"):  # rewritten already (a dumped config)
        if cfg.model.get("type", "").startswith(PREFIX):
            cached_segmentor_type(cfg.model.type)
        return cfg
    if settings.source == "images":
        loader.dataset = dict(type="SeededViewDataset", dataset=source, num_views=settings.num_views,
                              aug_seed=settings.aug_seed)
    else:
        key_cfg = dict(model=copy.deepcopy(cfg.model), randomness=cfg.get("randomness"),
                       feature_cache=cfg.feature_cache, train_dataloader=dict(dataset=source))
        cfg.model.type = cached_segmentor_type(cfg.model.get("type", "EncoderDecoder"))
        prep = cfg.model.get("data_preprocessor")
        if prep is not None and prep.get("type") != "FeatureCacheDataPreprocessor":
            cfg.model.data_preprocessor = dict(type="FeatureCacheDataPreprocessor", preprocessor=prep)
        name = getattr(cfg, "filename", None)
        loader.dataset = dict(type="FeatureCacheDataset", cache_dir=osp.abspath(settings.dir),
                              num_views=settings.num_views, key_cfg=key_cfg, config_name=name or "CONFIG")
    sampler = loader.get("sampler") or {}
    infinite = sampler.get("type") == "InfiniteSampler"
    loader.sampler = dict(type="ViewSampler", shuffle=sampler.get("shuffle", True), infinite=infinite)
    hooks = cfg.get("default_hooks") or {}
    if not infinite and "sampler_seed" in hooks and hooks["sampler_seed"] is None:
        # epoch-based loops advance the view only through this hook's set_epoch: never train every epoch on view 0
        cfg.default_hooks.sampler_seed = dict(type="DistSamplerSeedHook")
    return cfg


@RUNNERS.register_module()
class FeatureCacheRunner(Runner):
    """mmengine's ``Runner`` after :func:`apply_feature_cache` (a plain Runner when the config has no cache)."""

    @classmethod
    def from_cfg(cls, cfg):
        return super().from_cfg(apply_feature_cache(cfg))
