"""Data-parallel strategies of the alignment trainer: DDP (student replicated) or FSDP2 (student sharded per block).

Why FSDP: the G student's fp32 weights, gradients and LAMB's two moments are 1.9B x 16 bytes = ~30 GB per replica
under DDP. FSDP2 (``torch.distributed.fsdp.fully_shard``) shards parameters, gradients and optimizer state over the
ranks. Wrapping policy: every PE block is its own unit (gathered just before it runs, freed after, gathered again
for backward), and the root unit (patch embedding, class token, position table, ln_pre, the distillation
projection) is gathered for the whole step. The frozen teachers are not wrapped (no gradients or optimizer state;
bf16 with ``amp``).

Checkpoints hold the FULL state dict under the official PE names whatever the strategy (gathered to rank 0 with
torch's ``distributed.checkpoint.state_dict`` API, optimizer state keyed by parameter name), so a run saved under
FSDP on N ranks resumes under DDP, FSDP or one process.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

STRATEGIES = ("ddp", "fsdp")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is unknown; use one of {STRATEGIES} (config key 'strategy' or "
                         "tools/align.py --strategy)")
    return strategy


def wrap_for_strategy(module: nn.Module, blocks: Iterable[nn.Module], strategy: str, world_size: int) -> nn.Module:
    """The module to call in the training step. One process: ``module`` itself. DDP: a ``DistributedDataParallel``
    around it. FSDP: ``module`` sharded in place (each of ``blocks`` a unit, ``module`` the root unit)."""
    check_strategy(strategy)
    if world_size == 1:
        return module
    if strategy == "ddp":
        return nn.parallel.DistributedDataParallel(module)
    return shard_per_block(module, blocks)


def shard_per_block(module: nn.Module, blocks: Iterable[nn.Module]) -> nn.Module:
    """FSDP2 in place over the default process group: each block a unit, ``module`` the root unit."""
    from torch.distributed.fsdp import fully_shard

    blocks = list(blocks)
    for block in blocks:
        fully_shard(block)
    fully_shard(module)
    local = sum(p.to_local().numel() for p in module.parameters())
    total = sum(p.numel() for p in module.parameters())
    print_log(f"FSDP: {len(blocks)} block units + root unit; this rank holds {local} of {total} parameters",
              logger="current")
    return module


def is_fsdp(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


@contextmanager
def gradient_sync(wrapped: nn.Module, enabled: bool):
    """Skip the gradient all-reduce / reduce-scatter on all but the last micro-batch of an accumulated step."""
    if isinstance(wrapped, nn.parallel.DistributedDataParallel) and not enabled:
        with wrapped.no_sync():
            yield
    elif is_fsdp(wrapped):
        wrapped.set_requires_gradient_sync(enabled)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
    else:
        yield


def _full(cpu_offload: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def full_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> Tuple[dict, Optional[dict]]:
    """(model, optimizer) state dicts, full and on CPU (rank 0 holds them under FSDP; collective: call on every
    rank). The optimizer's is ``None`` before its first step: torch's API would initialise the state with a dummy
    step, which advances LAMB's step counter."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model = get_model_state_dict(module, options=_full(True))
    optim = get_optimizer_state_dict(module, optimizer, options=_full(True)) if optimizer.state else None
    return model, optim


def load_full_state(module: nn.Module, optimizer: torch.optim.Optimizer, model: dict, optim: Optional[dict]) -> None:
    """Load full state dicts (every rank read the file) into a plain, DDP-ready or FSDP-sharded module; strict."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(module, model, options=_full(False))
    if optim is not None:
        set_optimizer_state_dict(module, optimizer, optim, options=_full(False))
