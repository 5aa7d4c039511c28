"""What a feature cache was computed from (its key), the ``feature_cache`` config switch, and refusing stale caches.

The key records everything that changes the stored features or labels: the model and its options, the weights
(SHA-256 of the checkpoint file, or ``random-init seed N``), the output layers, the input size, the preprocessing
(mean/std, padding), the dataset (type and the ordered image list), the augmentation pipeline (its config) and the
augmentation seed, and the storage dtype. A cache whose key differs in any field is refused with the field's name,
both values and the command that rebuilds it. The number of views is not part of the key: view ``v`` depends only
on ``(aug_seed, image, v)``, so a cache with more views serves a run that asks for fewer, and asking the builder for
more views extends a cache in place.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from typing import Dict, Optional

from .store import FORMAT_VERSION, FeatureCacheError, sha256_file

# backbone config entries that do not change its outputs
_NOT_OUTPUT_RELEVANT = {"checkpoint", "frozen", "grad_checkpointing", "init_cfg"}


@dataclass
class CacheSettings:
    """The ``feature_cache=dict(...)`` config entry.

    Args:
        dir: cache directory; None disables the cache (the config trains on images as usual).
        num_views: augmented views per image (N): epoch ``e`` trains on view ``e % N``. Storage grows linearly:
            one view = images x channels x tokens x 2 bytes (fp16), e.g. ADE20k train (20,210 images) with
            PE-Spatial-B at 512 px (768 x 32 x 32) is 30 GiB per view, plus 0.25 GiB of labels.
        aug_seed: seed of the augmentation draws (view ``v`` of image ``i`` uses seed f(aug_seed, i, v)).
        dtype: ``'float16'`` (default; relative rounding 2^-11) or ``'float32'`` (exact, twice the size).
        shard_size: samples per shard file (chosen when the cache is created).
        batch_size: images per backbone forward while building.
        source: ``'cache'`` trains from the stored features; ``'images'`` runs the backbone on the same pre-drawn
            views on the fly (the reference the cached path must equal; no cache needed).
    """

    dir: Optional[str] = None
    num_views: int = 4
    aug_seed: int = 0
    dtype: str = "float16"
    shard_size: int = 64
    batch_size: int = 8
    source: str = "cache"

    @classmethod
    def from_cfg(cls, cfg) -> "CacheSettings":
        raw = dict(cfg.get("feature_cache") or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"feature_cache has unknown entries {unknown}; known: {sorted(known)}")
        s = cls(**raw)
        if s.dtype not in ("float16", "float32"):
            raise ValueError(f"feature_cache.dtype={s.dtype!r}; use 'float16' or 'float32'")
        if s.source not in ("cache", "images"):
            raise ValueError(f"feature_cache.source={s.source!r}; use 'cache' (stored features) or 'images' "
                             "(same views, backbone run on the fly)")
        if s.num_views < 1 or s.shard_size < 1 or s.batch_size < 1:
            raise ValueError(f"feature_cache: num_views, shard_size and batch_size must be >= 1, got {raw}")
        return s

    @property
    def enabled(self) -> bool:
        return self.dir is not None or self.source == "images"


_HASHES: Dict[tuple, str] = {}


def checkpoint_fingerprint(checkpoint: Optional[str], seed: Optional[int]) -> str:
    """``sha256:<hex>`` of the weights file, or ``random-init seed N`` without one (hashes memoised per process
    by path, size and mtime: a G checkpoint takes tens of seconds to hash)."""
    if not checkpoint:
        if seed is None:
            raise ValueError("the backbone has no checkpoint, so its random weights depend on the seed, and the config "
                             "sets none: add randomness=dict(seed=0) (or pass --cfg-options randomness.seed=0)")
        return f"random-init seed {int(seed)}"
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"backbone checkpoint {checkpoint!r} does not exist (set model.backbone.checkpoint)")
    st = os.stat(checkpoint)
    memo = (os.path.abspath(checkpoint), st.st_size, st.st_mtime_ns)
    if memo not in _HASHES:
        _HASHES[memo] = "sha256:" + sha256_file(checkpoint)
    return _HASHES[memo]


def _plain(obj):
    """Config values as JSON values (tuples -> lists, ConfigDict -> dict, other objects -> repr)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=lambda o: o.to_dict() if hasattr(o, "to_dict")
                                 else list(o) if isinstance(o, tuple) else repr(o)))


def cache_key(cfg, image_list: list, settings: CacheSettings) -> dict:
    """The key of the cache a config needs. ``image_list``: the train dataset's images in index order."""
    model = cfg.model
    backbone = dict(model.backbone)
    prep = dict(model.get("data_preprocessor") or {})
    if prep.get("batch_augments"):
        raise ValueError("data_preprocessor.batch_augments mix several images after the pipeline, which a cache of "
                         "per-image views cannot replay: remove them or train without feature_cache")
    if prep.get("size") is None and prep.get("size_divisor") is None:
        raise ValueError("the feature cache stores fixed-size views: set model.data_preprocessor.size to the crop "
                         "size (mmseg pads every training view to it), e.g. size=(512, 512)")
    if not backbone.get("frozen", False):
        raise ValueError("the feature cache stores a frozen backbone's outputs: set model.backbone.frozen=True (a "
                         "backbone that trains changes its features every step)")
    seed = (cfg.get("randomness") or {}).get("seed")
    train_ds = dict(cfg.train_dataloader.dataset)
    while train_ds.get("type") == "SeededViewDataset" or ("dataset" in train_ds and "pipeline" not in train_ds):
        train_ds = dict(train_ds["dataset"])
    return _plain({
        "format": FORMAT_VERSION,
        "model": backbone.get("model_name", backbone.get("type")),
        "checkpoint": checkpoint_fingerprint(backbone.get("checkpoint"), seed),
        "out_indices": backbone.get("out_indices", "default"),
        "backbone_options": {k: v for k, v in backbone.items()
                             if k not in _NOT_OUTPUT_RELEVANT | {"model_name", "out_indices"}},
        # the padded training size (size_divisor: the builder checks that every view has the same shape)
        "input_size": prep.get("size") or {"size_divisor": prep["size_divisor"]},
        "preprocessing": {k: v for k, v in prep.items() if k not in ("size", "size_divisor", "test_cfg")},
        "dataset": {"type": train_ds.get("type"), "images": len(image_list),
                    "image_list_sha256": hashlib.sha256("\n".join(image_list).encode()).hexdigest()},
        "pipeline": train_ds.get("pipeline"),
        "aug_seed": settings.aug_seed,
        "dtype": settings.dtype,
    })


def _first_difference(a, b, where: str = "") -> str:
    """Where two JSON values first differ, e.g. ``pipeline[2].crop_size: [64, 64] vs [32, 32]``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k, "<absent>") != b.get(k, "<absent>"):
                return _first_difference(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where.lstrip('.')}: cache has {json.dumps(a)[:200]}, the config needs {json.dumps(b)[:200]}"


def check_key(stored: dict, wanted: dict, cache_dir: str, config_name: str) -> None:
    """Refuse a cache built for another setting, naming every differing key field and how to rebuild."""
    fields_ = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
    if not fields_:
        return
    lines = [f"feature cache {cache_dir} was built for another setting; differing key fields: {', '.join(fields_)}"]
    lines += ["  " + _first_difference(stored.get(k, "<absent>"), wanted.get(k, "<absent>"), k) for k in fields_]
    lines.append(f"Rebuild it with: python tools/cache_features.py {config_name} --overwrite (same --cfg-options as "
                 "training), or point feature_cache.dir at a new directory")
    raise FeatureCacheError("\n".join(lines))
