"""Checkpoint I/O around mmengine 0.10.7: safe resuming under torch >= 2.6 and atomic checkpoint files.

1. Resuming. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and mmengine 0.10.7 calls it
   without the argument, so loading one of its own training checkpoints fails with "Weights only load failed".
   mmengine checkpoints pickle a few non-tensor objects (the message hub's ``HistoryBuffer`` of logged scalars,
   which holds numpy arrays). :func:`allow_mmengine_checkpoint_types` puts exactly those classes on torch's
   allow-list (``torch.serialization.add_safe_globals``), keeping the weights-only unpickler for everything
   else: a checkpoint that pickles any other object still refuses to load. Our tools call it explicitly;
   importing this package does not.

   What is trusted (plain data containers; nothing that runs arbitrary code on unpickling):
   - ``mmengine.logging.HistoryBuffer``: rebuilt from its ``__dict__`` (two numpy arrays, an int, and its
     ``statistics_methods`` dict, which pickle protocol 2 stores as ``getattr(HistoryBuffer, 'mean')`` etc.);
   - ``getattr`` under its pickle name ``builtins.getattr``, but bound to :func:`_history_buffer_getattr`, which
     only returns functions defined on ``HistoryBuffer`` itself (``min``, ``max``, ``current``, ``mean``) and
     raises for anything else. The real ``getattr`` is never allow-listed;
   - numpy's array reconstruction: ``numpy.ndarray``, ``numpy._core.multiarray._reconstruct``
     (``numpy.core`` on numpy 1.x), ``numpy.dtype`` and the concrete dtype classes of numeric types
     (``numpy.dtypes.Float64DType`` etc.), and ``numpy._core.multiarray.scalar`` for numpy scalars.

2. Atomic writes. mmengine's ``LocalBackend.put`` opens the target with ``'wb'`` and writes into it, so a job
   killed while saving leaves a truncated ``iter_N.pth`` (and, for ``save_last``/best checkpoints, destroys the
   previous good file). :class:`AtomicLocalBackend` writes to a temporary file in the same directory, fsyncs and
   ``os.replace``-s it over the target. Our base configs select it with
   ``default_hooks.checkpoint.backend_args=dict(backend='pe_atomic_local')``.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import List, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend

from pe_dense.io import atomic_write_bytes

ATOMIC_BACKEND = "pe_atomic_local"


def _history_buffer_getattr(obj, name: str):
    """``getattr`` as seen by the unpickler: only ``HistoryBuffer``'s own plain-function attributes."""
    from mmengine.logging import HistoryBuffer

    attr = vars(HistoryBuffer).get(name) if obj is HistoryBuffer and not name.startswith("_") else None
    if not inspect.isfunction(attr):
        raise ValueError(f"checkpoint asks for getattr({obj!r}, {name!r}); only HistoryBuffer statistics methods "
                         "are allowed when loading with weights_only=True")
    return attr


def mmengine_checkpoint_types() -> List[object]:
    """The globals an mmengine 0.10.7 training checkpoint needs besides tensors and builtins (see the module doc)."""
    from mmengine.logging import HistoryBuffer

    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    numeric = (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
               np.uint32, np.uint64, np.bool_)
    dtype_classes = [type(np.dtype(t)) for t in numeric]
    return [HistoryBuffer, (_history_buffer_getattr, "builtins.getattr"), np.ndarray, np.dtype,
            multiarray._reconstruct, multiarray.scalar, *dtype_classes]


def allow_mmengine_checkpoint_types() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine checkpoints (see the module docstring)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4: weights_only was not the default, nothing to do
        return
    add(mmengine_checkpoint_types())


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put``/``put_text`` replace the target atomically."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = "utf-8") -> None:
        atomic_write_bytes(filepath, obj.encode(encoding))


register_backend(ATOMIC_BACKEND, AtomicLocalBackend)
