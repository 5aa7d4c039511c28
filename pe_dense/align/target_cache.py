"""SAM 2 target cache: the SAM features of every training view, computed once, read memory-mapped.

Reuses the feature store's layout and primitives (``pe_dense.features.store``: manifest, atomic shard writes,
SHA-256 per shard, memory-mapped structured ``.npy`` shards). Sample ``g`` of the run (the trainer's global sample
index, ``augment.ViewSampler``) is record ``g % shard_size`` of shard ``g // shard_size``; its metainfo stores the
view key ``sample=g;img=i;<crop, flip, colour>``, and a read whose key differs is refused, so a cache only ever
serves the image and augmentation it was built for. Shards are written whole and listed in the manifest after
they are on disk: an interrupted build (even ``kill -9``) resumes at the first unlisted shard, recomputes a listed
shard whose file is truncated (naming it), removes the dead writer's temporary files and ends byte-identical.
One builder per directory.

``dtype='int8'`` halves the fp16 cache: per-token symmetric quantisation, ``q = round(x / s)`` with
``s = max_c |x_c| / 127`` over the token's prompt channels, ``s`` stored in float32 beside ``q`` and multiplied back
on read. Per token because L_loc only uses each token's direction (its cosines with the other tokens), which a
per-token scale leaves exact up to the rounding (|x - q s| <= s / 2 per value).
"""
from __future__ import annotations

import glob
import logging
import os
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log

from pe_dense.features import store
from pe_dense.features.store import (
    FORMAT_VERSION,
    CacheDir,
    FeatureCacheError,
    canonical_json,
    records_to_npy,
    sha256_file,
    shard_name,
)

from .augment import ViewSampler

atomic_write = store.atomic_write  # one name for every cache file write (the resume test interrupts it)

DTYPES = {"float16": np.float16, "float32": np.float32, "int8": np.int8}
FIELD = "sam"
SCALE = "sam_scale"  # int8 caches: the per-token scale, float32 (token grid)
REBUILD = "rebuild it with tools/cache_sam_targets.py CONFIG (same config and settings as the training run)"


def quantise_int8(feats: np.ndarray):
    """(..., P, gh, gw) float32 -> (int8 values, float32 per-token scales (..., gh, gw)); see the module docstring."""
    feats = np.asarray(feats, dtype=np.float32)
    scale = np.abs(feats).max(axis=-3) / np.float32(127)
    safe = np.where(scale > 0, scale, np.float32(1))  # an all-zero token stays zero
    q = np.clip(np.rint(feats / np.expand_dims(safe, -3)), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def dequantise_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * np.expand_dims(np.asarray(scale, dtype=np.float32), -3)


def _remove_dead_temporaries(root: str) -> None:
    """Temporary files of a killed writer (``pe_dense.io`` writes ``.tmp_*`` then renames; kill -9 skips cleanup)."""
    for path in sorted(glob.glob(os.path.join(root, ".tmp_*"))):
        print_log(f"SAM target cache: removing {path}, left by an interrupted build", logger="current",
                  level=logging.WARNING)
        os.remove(path)


def build_target_cache(root: str, sam_targets, sampler: ViewSampler, num_samples: int, token_grid: Tuple[int, int],
                       key: Dict, shard_size: int = 256, dtype: str = "float16") -> dict:
    """Compute (or resume) the cache of samples 0 .. num_samples - 1; returns the manifest."""
    if dtype not in DTYPES:
        raise ValueError(f"cache dtype {dtype!r} is unknown; use one of {sorted(DTYPES)}")
    store = CacheDir(root)
    os.makedirs(store.root, exist_ok=True)
    _remove_dead_temporaries(store.root)
    layout = {"num_samples": num_samples, "shard_size": shard_size, "token_grid": list(token_grid), "dtype": dtype}
    manifest = store.read_manifest()
    if manifest is None:
        manifest = {"format": FORMAT_VERSION, "key": key, "layout": layout, "shards": {}}
    elif manifest["key"] != key or manifest["layout"] != layout:
        raise FeatureCacheError(f"{store.root} holds a cache for other settings (key/layout differ): use another "
                                "directory or delete this one")
    for part in range(-(-num_samples // shard_size)):
        name = shard_name(0, part)
        if name in manifest["shards"]:
            problem = store.shard_problem(name, manifest["shards"][name])
            if problem is None:
                continue
            print_log(f"SAM target cache: {problem}; recomputing it", logger="current", level=logging.WARNING)
        ids = range(part * shard_size, min(num_samples, (part + 1) * shard_size))
        records, metas = {FIELD: []}, []
        for start in range(0, len(ids), sampler.batch_size):
            chunk = ids[start: start + sampler.batch_size]
            views, keys = sampler.views([sampler.sample(g) for g in chunk])
            feats = sam_targets.targets(views, keys, token_grid).float().cpu().numpy()
            if dtype == "int8":
                feats, scale = quantise_int8(feats)
                records.setdefault(SCALE, []).extend(scale)
            records[FIELD] += list(feats.astype(DTYPES[dtype]))
            metas += [{"key": k} for k in keys]
        atomic_write(store.path(name, ".npy"), records_to_npy(records))
        atomic_write(store.path(name, ".json"), canonical_json(metas))
        manifest["shards"][name] = {"samples": len(ids), "bytes": os.path.getsize(store.path(name, ".npy")),
                                    "sha256": sha256_file(store.path(name, ".npy"))}
        store.write_manifest(manifest)
        print_log(f"SAM target cache: shard {part + 1} / {-(-num_samples // shard_size)} written", logger="current")
    return manifest


class SAMTargetCache:
    """Reads a built cache; the trainer's target source (``targets(views, keys, grid)``)."""

    def __init__(self, root: str, key: Dict):
        self.store = CacheDir(root)
        manifest = self.store.read_manifest()
        if manifest is None:
            raise FeatureCacheError(f"no SAM target cache at {self.store.root}; {REBUILD}")
        if manifest["key"] != key:
            diff = sorted(k for k in set(key) | set(manifest["key"]) if key.get(k) != manifest["key"].get(k))
            raise FeatureCacheError(f"the cache at {self.store.root} was built with other settings ({diff}); {REBUILD}")
        self.manifest, self.layout = manifest, manifest["layout"]
        self._open: Dict[str, tuple] = {}

    def verify(self) -> None:
        """Re-hash every shard against the manifest's SHA-256."""
        for name, entry in self.manifest["shards"].items():
            if sha256_file(self.store.path(name, ".npy")) != entry["sha256"]:
                raise FeatureCacheError(f"shard {self.store.path(name, '.npy')} fails its checksum; {REBUILD}")

    def _record(self, g: int):
        name = shard_name(0, g // self.layout["shard_size"])
        if name not in self.manifest["shards"]:
            raise FeatureCacheError(f"sample {g} is beyond the cache ({self.layout['num_samples']} samples, or the "
                                    f"build was interrupted); build more steps: {REBUILD}")
        if name not in self._open:
            self._open[name] = self.store.open_shard(name, self.manifest["shards"][name], REBUILD)
        arr, metas = self._open[name]
        i = g % self.layout["shard_size"]
        if self.layout["dtype"] == "int8":
            return dequantise_int8(arr[FIELD][i], arr[SCALE][i]), metas[i]["key"]
        return arr[FIELD][i], metas[i]["key"]

    def targets(self, views: torch.Tensor, keys: Sequence[str], token_grid: Tuple[int, int]) -> torch.Tensor:
        if list(token_grid) != self.layout["token_grid"]:
            raise FeatureCacheError(f"the cache holds {self.layout['token_grid']} token grids, the student needs "
                                    f"{list(token_grid)}; {REBUILD}")
        out = []
        for k in keys:
            g = int(k.split(";")[0].split("=")[1])
            arr, stored = self._record(g)
            if stored != k:
                raise FeatureCacheError(f"cached sample {g} is view {stored!r}, the run asks for {k!r} (another "
                                        f"dataset, seed or augmentation); {REBUILD}")
            out.append(torch.from_numpy(np.array(arr, dtype=np.float32)))
        return torch.stack(out).to(views.device)

