"""Compute a config's frozen-backbone features once, for ``num_views`` pre-drawn views of every training image.

Each shard is computed from scratch (views drawn by :class:`~pe_dense.features.views.SeededViewDataset`, the
config's own data preprocessor, the backbone under ``no_grad``) and written atomically; the manifest then lists it.
Rerunning resumes: listed shards whose file is missing or has the wrong size (or, with ``verify``, the wrong
SHA-256) are recomputed, unlisted ones are computed, nothing else is touched.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from .key import CacheSettings, cache_key, check_key
from .store import CacheDir, FeatureCacheError, atomic_write, canonical_json, records_to_npy, sha256_file, shard_name
from .views import SeededViewDataset, dataset_image_list

logger = logging.getLogger(__name__)


@dataclass
class BuildReport:
    cache_dir: str
    shards_total: int
    shards_written: int
    shards_remaining: int


def source_dataset_cfg(cfg) -> dict:
    """The config's training dataset (inside any SeededViewDataset wrapper)."""
    ds = cfg.train_dataloader.dataset
    while ds.get("type") == "SeededViewDataset":
        ds = ds["dataset"]
    return ds


def _json_meta(meta: dict) -> dict:
    def conv(v):
        if isinstance(v, (np.ndarray, np.generic, torch.Tensor)):
            return np.asarray(v).tolist()
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
    return {k: conv(v) for k, v in meta.items()}


def _gt_array(name: str, t: torch.Tensor) -> np.ndarray:
    """Integer labels in the smallest of uint8/int16/int32 that holds them; float targets as float32."""
    a = t.cpu().numpy()
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.uint8, np.int16, np.int32):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return a.astype(dt)
    raise FeatureCacheError(f"{name} holds values in [{lo}, {hi}], beyond int32")


def _feature_arrays(feats, dtype: str) -> Dict[str, np.ndarray]:
    """Backbone outputs -> ``map{i}`` (B, C, h, w) and, for ``(map, cls)`` pairs, ``cls{i}`` (B, C) arrays."""
    out = {}
    for i, f in enumerate(feats):
        parts = {"map": f[0], "cls": f[1]} if isinstance(f, (tuple, list)) else {"map": f}
        for kind, t in parts.items():
            a = t.detach().float().cpu().numpy()
            with np.errstate(over="ignore"):
                stored = a.astype(dtype)
            if not np.isfinite(stored).all() and np.isfinite(a).all():
                raise FeatureCacheError(f"backbone output {kind}{i} exceeds the float16 range (max |x| = "
                                        f"{np.abs(a).max():.4g}); build the cache with feature_cache.dtype='float32'")
            out[f"{kind}{i}"] = stored
    return out


class _FeatureComputer:
    """The config's model (built as mmengine's runner builds it, so random-init weights agree) and its views."""

    def __init__(self, cfg, views: SeededViewDataset):
        from mmengine.registry import MODELS
        from mmengine.runner import set_random_seed

        randomness = dict(cfg.get("randomness") or {})
        set_random_seed(randomness.get("seed"), deterministic=randomness.get("deterministic", False),
                        diff_rank_seed=randomness.get("diff_rank_seed", False))
        self.model = MODELS.build(cfg.model)
        self.model.backbone.init_weights()  # loads the checkpoint, if any
        self.model.eval()
        self.views = views

    @torch.no_grad()
    def shard(self, view: int, indices: List[int], batch_size: int, dtype: str):
        from mmengine.dataset import pseudo_collate

        records: Dict[str, List[np.ndarray]] = {}
        metas = []
        for start in range(0, len(indices), batch_size):
            samples = [self.views.get_view(i, view) for i in indices[start:start + batch_size]]
            data = self.model.data_preprocessor(pseudo_collate(samples), True)
            feats = _feature_arrays(self.model.backbone(data["inputs"]), dtype)
            for b, ds in enumerate(data["data_samples"]):
                fields = {k: v[b] for k, v in feats.items()}
                for k in sorted(ds.keys()):
                    if k.startswith("gt_") and hasattr(ds.get(k), "data"):
                        fields[k] = _gt_array(k, ds.get(k).data)
                for k, v in fields.items():
                    records.setdefault(k, []).append(v)
                metas.append(_json_meta(ds.metainfo))
        shapes = {k: {tuple(a.shape) for a in v} for k, v in records.items()}
        uneven = {k: sorted(s) for k, s in shapes.items() if len(s) > 1}
        if uneven:
            raise FeatureCacheError(f"training views differ in shape {uneven}: the cache needs fixed-size views; set "
                                    "model.data_preprocessor.size to the crop size")
        return records, metas


def _clear(root: str) -> None:
    for pattern in ("manifest.json", "view*_part*.npy", "view*_part*.json", ".tmp_*"):
        for path in glob.glob(os.path.join(root, pattern)):
            os.unlink(path)


def build_feature_cache(cfg, overwrite: bool = False, max_new_shards: Optional[int] = None,
                        verify: bool = False) -> BuildReport:
    """Build or complete the cache of ``cfg`` (its ``feature_cache`` entry says where and how many views).

    Args:
        overwrite: delete an existing cache in ``feature_cache.dir`` first (also one built for another key).
        max_new_shards: stop after writing this many shards (time-limited jobs: rerun to continue).
        verify: re-hash every listed shard and recompute those whose SHA-256 differs from the manifest.
    """
    from mmengine.registry import init_default_scope

    settings = CacheSettings.from_cfg(cfg)
    if settings.dir is None:
        raise ValueError("feature_cache.dir is not set: pass --cfg-options feature_cache.dir=/path/to/cache "
                         "(or set feature_cache=dict(dir=...) in the config)")
    init_default_scope(cfg.get("default_scope", "mmseg"))
    views = SeededViewDataset(source_dataset_cfg(cfg), settings.num_views, settings.aug_seed)
    key = cache_key(cfg, dataset_image_list(views), settings)
    store = CacheDir(settings.dir)
    config_name = getattr(cfg, "filename", None) or "CONFIG"
    if overwrite and os.path.isdir(store.root):
        _clear(store.root)
    manifest = store.read_manifest()
    if manifest is None:
        manifest = dict(key=key, num_images=views.num_images, shard_size=settings.shard_size, shards={})
    else:
        check_key(manifest["key"], key, store.root, config_name)
    n, size = manifest["num_images"], manifest["shard_size"]
    for name, entry in sorted(manifest["shards"].items()):
        problem = store.shard_problem(name, entry)
        if problem is None and verify and sha256_file(store.path(name, ".npy")) != entry["sha256"]:
            problem = f"shard {store.path(name, '.npy')} does not match its SHA-256"
        if problem:
            logger.warning("%s: recomputing it", problem)
            del manifest["shards"][name]
    parts = (n + size - 1) // size
    todo = [(v, p) for v in range(settings.num_views) for p in range(parts)
            if shard_name(v, p) not in manifest["shards"]]
    written = 0
    if todo and max_new_shards != 0:
        if not os.path.isfile(store.manifest_path):
            store.write_manifest(manifest)  # records the key before the first (long) shard
        computer = _FeatureComputer(cfg, views)
        for v, p in todo:
            if max_new_shards is not None and written >= max_new_shards:
                break
            name = shard_name(v, p)
            records, metas = computer.shard(v, list(range(p * size, min(n, (p + 1) * size))), settings.batch_size,
                                            settings.dtype)
            shapes = {k: list(v[0].shape) for k, v in records.items()}
            if manifest.setdefault("shapes", shapes) != shapes:
                raise FeatureCacheError(f"views of {name} have shapes {shapes}, earlier shards {manifest['shapes']}: "
                                        "the cache needs fixed-size views; set model.data_preprocessor.size to the "
                                        "crop size (or make every crop the same size)")
            data = records_to_npy(records)
            atomic_write(store.path(name, ".json"), canonical_json(metas))
            atomic_write(store.path(name, ".npy"), data)
            manifest["shards"][name] = dict(bytes=len(data), samples=len(metas),
                                            sha256=hashlib.sha256(data).hexdigest())
            manifest["shards"] = dict(sorted(manifest["shards"].items()))
            store.write_manifest(manifest)
            written += 1
            logger.info("feature cache %s: wrote %s (%d samples, %.1f MiB)", store.root, name, len(metas),
                        len(data) / 2 ** 20)
    remaining = sum(1 for v in range(settings.num_views) for p in range(parts)
                    if shard_name(v, p) not in manifest["shards"])
    return BuildReport(store.root, settings.num_views * parts, written, remaining)


def describe(cache_dir: str) -> str:
    """One line per key field and the shard count, for ``tools/cache_features.py --show``."""
    manifest = CacheDir(cache_dir).read_manifest()
    if manifest is None:
        return f"{cache_dir}: no feature cache"
    lines = [f"{cache_dir}: {manifest['num_images']} images, {len(manifest['shards'])} shards of "
             f"{manifest['shard_size']}"]
    lines += [f"  {k}: {json.dumps(v)[:160]}" for k, v in sorted(manifest["key"].items())]
    return "\n".join(lines)
