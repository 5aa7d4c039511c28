"""Training utilities on mmengine/mmdet. Importing registers (in mmengine/mmdet registries) the hooks
``PreflightHook`` and ``IterationSeedHook``, the transforms ``CheckedLoadImageFromFile`` and ``SanitizeBoxes``, the
atomic checkpoint backend ``pe_atomic_local`` and the FSDP wrap policy ``pe_block_wrap_policy``.

It does *not* change how ``torch.load`` works: tools call :func:`allow_mmengine_checkpoint_types` explicitly.
"""
from .checkpoint_io import (
           ATOMIC_BACKEND,
           AtomicLocalBackend,
           allow_mmengine_checkpoint_types,
           mmengine_checkpoint_types,
)
from .data_checks import CheckedLoadImageFromFile, SanitizeBoxes, to_three_channels
from .hooks import IterationSeedHook, PreflightHook
from .runner import build_runner, pe_block_wrap_policy

__all__ = ["ATOMIC_BACKEND", "AtomicLocalBackend", "allow_mmengine_checkpoint_types", "mmengine_checkpoint_types",
           "CheckedLoadImageFromFile", "SanitizeBoxes", "to_three_channels", "PreflightHook", "IterationSeedHook",
           "build_runner", "pe_block_wrap_policy"]
