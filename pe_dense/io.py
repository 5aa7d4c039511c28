"""Atomic file writing: a crash mid-write never leaves a truncated file under the final name."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Dict, Iterator, Union

import torch


@contextmanager
def temp_then_replace(path: Union[str, os.PathLike]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path`` in one ``os.replace``,
    when it fails it is removed."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix="_" + os.path.basename(path), dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with temp_then_replace(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_save(obj, path: str) -> None:
    """Save ``obj`` to ``path`` (``.safetensors`` for a flat tensor dict, else ``torch.save``) atomically."""
    with temp_then_replace(path) as tmp:
        if path.endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(_contiguous(obj), tmp)
        else:
            torch.save(obj, tmp)


def _contiguous(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise TypeError("safetensors files hold only tensors; save nested checkpoints as .pth")
    return {k: v.contiguous() for k, v in sd.items()}
