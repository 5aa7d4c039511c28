"""Atomic checkpoint writing: a crash mid-write never leaves a truncated file under the final name."""
from __future__ import annotations

import os
import tempfile
from typing import Dict

import torch


def atomic_save(obj, path: str) -> None:
    """Save ``obj`` to ``path`` (``.safetensors`` for a flat tensor dict, else ``torch.save``) atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    os.close(fd)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(_contiguous(obj), tmp)
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _contiguous(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise TypeError("safetensors files hold only tensors; save nested checkpoints as .pth")
    return {k: v.contiguous() for k, v in sd.items()}
