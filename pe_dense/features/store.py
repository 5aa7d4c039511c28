"""On-disk layout of a feature cache: a manifest plus memory-mapped shards.

A cache directory holds

- ``manifest.json``: the cache key (what produced the features), the layout (``num_images``, ``shard_size``,
  ``fields``) and the complete shards with their sizes and SHA-256;
- ``view{v:03d}_part{p:05d}.npy``: samples ``p * shard_size ...`` of view ``v`` as one numpy structured array, one
  record per sample with a field per tensor (``map0``, ``cls0``, ... features, ``gt_sem_seg``/``gt_depth_map``
  ...), read with ``np.load(mmap_mode='r')`` so a sample costs only its own bytes;
- ``view{v:03d}_part{p:05d}.json``: the samples' data-sample metainfo (shapes, flip, paths).

Every file is written to a temporary name, fsynced and ``os.replace``-d into place, and a shard counts only once
the manifest (itself replaced atomically) lists it: a killed job leaves at most an unlisted temporary file, and the
next run recomputes exactly the unlisted shards. Nothing in the files depends on when or in which order shards
were written, so a resumed cache is byte-identical to one built in one go.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional

import numpy as np

from pe_dense.errors import PEDenseError
from pe_dense.io import atomic_write_bytes

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class FeatureCacheError(PEDenseError, RuntimeError):
    """A cache that is missing, incomplete, damaged or was built for another setting."""


def shard_name(view: int, part: int) -> str:
    return f"view{view:03d}_part{part:05d}"


atomic_write = atomic_write_bytes  # every cache file goes through this name (the resume tests intercept it)


def canonical_json(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1) + "\n").encode()


def sha256_file(path: str, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def records_to_npy(records: Dict[str, List[np.ndarray]]) -> bytes:
    """Samples (field -> list of arrays, one per sample) as the bytes of one ``.npy`` structured array."""
    import io

    n = len(next(iter(records.values())))
    dtype = np.dtype([(name, arrs[0].dtype, arrs[0].shape) for name, arrs in records.items()])
    out = np.zeros(n, dtype=dtype)
    for name, arrs in records.items():
        for i, a in enumerate(arrs):
            out[name][i] = a
    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    return buf.getvalue()


class CacheDir:
    """The manifest and shards of one cache directory."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.manifest_path = os.path.join(self.root, MANIFEST)

    def path(self, name: str, ext: str) -> str:
        return os.path.join(self.root, name + ext)

    def read_manifest(self) -> Optional[dict]:
        if not os.path.isfile(self.manifest_path):
            return None
        try:
            with open(self.manifest_path) as f:
                return json.load(f)
        except ValueError as err:
            raise FeatureCacheError(f"{self.manifest_path} is not valid JSON ({err}); the cache is damaged: delete "
                                    f"{self.root} and rebuild it with tools/cache_features.py") from err

    def write_manifest(self, manifest: dict) -> None:
        atomic_write(self.manifest_path, canonical_json(manifest))

    def shard_problem(self, name: str, entry: dict) -> Optional[str]:
        """Why the listed shard ``name`` is unusable (missing or size differs from the manifest), else None."""
        path = self.path(name, ".npy")
        if not os.path.isfile(path) or not os.path.isfile(self.path(name, ".json")):
            return f"shard {path} (or its .json metainfo) is missing"
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            return f"shard {path} is truncated or damaged ({size} bytes, the manifest records {entry['bytes']})"
        return None

    def open_shard(self, name: str, entry: dict, rebuild_hint: str):
        """(memory-mapped records, metainfo list) of a listed shard, checked against the manifest."""
        problem = self.shard_problem(name, entry)
        if problem is None:
            try:
                arr = np.load(self.path(name, ".npy"), mmap_mode="r", allow_pickle=False)
                with open(self.path(name, ".json")) as f:
                    metas = json.load(f)
                if len(arr) != entry["samples"] or len(metas) != entry["samples"]:
                    problem = f"shard {self.path(name, '.npy')} holds {len(arr)} samples, expected {entry['samples']}"
            except ValueError as err:
                problem = f"shard {self.path(name, '.npy')} cannot be read ({err})"
        if problem is not None:
            raise FeatureCacheError(f"{problem}. {rebuild_hint}")
        return arr, metas
