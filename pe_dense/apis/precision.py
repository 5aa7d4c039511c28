"""Cast a model's matmul weights to bf16/fp16 once, keeping norms and softmax in fp32.

``torch.autocast`` casts every weight again on every call when the call opens its own region (as one inference per
call does under ``torch.inference_mode``): about 10% of a B-512 bf16 forward on a CPU. Here the weights of the
matmul modules (``nn.Linear``, convolutions, PE's fused attention in-projection) are cast once; each such module
casts its input to the low dtype and its output back to fp32. Everything between them -- LayerNorm, BatchNorm,
GroupNorm, softmax (DETA's attention weights, classifier scores), box decoding, RoPE -- sees fp32 tensors and keeps
fp32 parameters. Inside PE attention, ``scaled_dot_product_attention`` gets low-precision q/k/v (as under autocast);
its fused CPU/CUDA kernels accumulate the softmax in fp32.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import nn

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(precision: Union[str, torch.dtype]) -> torch.dtype:
    if isinstance(precision, torch.dtype) and precision in DTYPES.values():
        return precision
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r} is not supported: use one of {', '.join(DTYPES)}")
    return DTYPES[precision]


def _matmul_types() -> tuple:
    from pe_dense.models.blocks import PEAttention

    return (nn.Linear, nn.modules.conv._ConvNd, PEAttention)


def _input_to(dtype):
    def hook(module, args):
        if args and torch.is_tensor(args[0]) and args[0].is_floating_point():
            return (args[0].to(dtype),) + tuple(args[1:])  # only the activation: PE's RoPE table stays fp32
        return None
    return hook


def _output_to_fp32(module, args, output):
    if torch.is_tensor(output) and output.is_floating_point():
        return output.float()
    return None


def cast_weights(model: nn.Module, precision: Union[str, torch.dtype]) -> nn.Module:
    """Cast ``model``'s matmul weights in place to ``precision`` (no-op for fp32) and return the model.

    Norm layers, embeddings, position tables and any parameter of other modules stay fp32. ``nn.MultiheadAttention``
    keeps fp32 (it reads its projection weights directly, not through its ``out_proj`` module). Calling it twice
    raises: the cast is meant to happen once, at construction.
    """
    dtype = resolve_dtype(precision)
    if dtype == torch.float32:
        return model
    if getattr(model, "_pe_cast_dtype", None) is not None:
        raise RuntimeError(f"the model's weights are already cast to {model._pe_cast_dtype}; build a new model to "
                           "change precision")
    skip = {id(m) for mha in model.modules() if isinstance(mha, nn.MultiheadAttention) for m in mha.modules()}
    matmul = _matmul_types()
    for module in model.modules():
        if id(module) in skip or not isinstance(module, matmul):
            continue
        for p in module.parameters(recurse=False):
            p.data = p.data.to(dtype)
        module.register_forward_pre_hook(_input_to(dtype))
        module.register_forward_hook(_output_to_fp32)
    model._pe_cast_dtype = dtype
    return model
