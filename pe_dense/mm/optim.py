"""Layer-wise learning-rate decay through the backbone's own ``get_layer_id``/``get_num_layers``."""
from __future__ import annotations

from typing import List, Optional, Tuple

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn


def find_layered_module(model: nn.Module) -> Optional[Tuple[str, nn.Module]]:
    """The first submodule that declares ``get_layer_id`` and ``get_num_layers`` (no class-name checks)."""
    for name, module in model.named_modules():
        if callable(getattr(module, "get_layer_id", None)) and callable(getattr(module, "get_num_layers", None)):
            return name, module
    return None


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(layer_decay_rate=0.9, ...)``: a parameter of layer id ``i`` in a backbone of
    ``n`` layers gets ``lr * rate ** (n - 1 - i)``; parameters outside the backbone keep ``lr``.

    Every other ``paramwise_cfg`` option of mmengine (``custom_keys``, ``norm_decay_mult``, ...) still applies;
    the decay multiplies on top. Each param group records ``layer_id`` and ``lr_scale``.
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = "", **kwargs) -> None:
        start = len(params)
        super().add_params(params, module, prefix, **kwargs)
        if prefix:  # only the outermost call post-processes
            return
        rate = float(self.paramwise_cfg.get("layer_decay_rate", 1.0))
        found = find_layered_module(module)
        if found is None:
            if rate != 1.0:
                raise ValueError("layer_decay_rate is set, but no submodule defines get_layer_id/get_num_layers")
            return
        root, backbone = found
        num_layers = backbone.get_num_layers()
        owner = {id(p): n[len(root) + 1:] for n, p in module.named_parameters() if n.startswith(root + ".")}
        for group in params[start:]:
            name = owner.get(id(group["params"][0]))
            layer_id = num_layers - 1 if name is None else backbone.get_layer_id(name)
            scale = rate ** (num_layers - 1 - layer_id)
            group["lr"] = group.get("lr", self.base_lr) * scale
            group["layer_id"], group["lr_scale"] = layer_id, scale
