"""Layer-wise lr decay through get_layer_id, on top of mmengine's paramwise options."""
import pytest
from torch import nn


class Det(nn.Module):
    def __init__(self):
        super().__init__()
        from pe_dense.mm import PEBackbone
        self.backbone = PEBackbone("PE-Spatial-T16-512", model_overrides=dict(layers=3))
        self.head = nn.Linear(4, 4)


def _groups(rate, **paramwise):
    from pe_dense.mm import LayerDecayOptimWrapperConstructor
    ctor = LayerDecayOptimWrapperConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.1)),
        dict(layer_decay_rate=rate, **paramwise))
    model = Det()
    wrapper = ctor(model)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g["params"][0])]: g for g in wrapper.optimizer.param_groups}


def test_layer_decay_scales_by_depth():
    groups = _groups(0.5)
    n = 5  # 3 blocks + embeddings + post
    assert groups["backbone.conv1.weight"]["lr"] == pytest.approx(0.5 ** (n - 1))
    assert groups["backbone.transformer.resblocks.0.ln_1.weight"]["lr"] == pytest.approx(0.5 ** 3)
    assert groups["backbone.transformer.resblocks.2.mlp.c_fc.weight"]["lr"] == pytest.approx(0.5 ** 1)
    assert groups["head.weight"]["lr"] == 1.0 and groups["head.weight"]["lr_scale"] == 1.0
    assert groups["backbone.transformer.resblocks.2.mlp.c_fc.weight"]["layer_id"] == 3


def test_layer_decay_composes_with_mmengine_options():
    groups = _groups(0.5, norm_decay_mult=0.0, custom_keys={"positional_embedding": dict(decay_mult=0.0)})
    assert groups["backbone.transformer.resblocks.0.ln_1.weight"]["weight_decay"] == 0.0
    assert groups["backbone.positional_embedding"]["weight_decay"] == 0.0
    assert groups["backbone.transformer.resblocks.0.attn.in_proj_weight"]["weight_decay"] == pytest.approx(0.1)
    assert groups["backbone.positional_embedding"]["lr"] == pytest.approx(0.5 ** 4)


def test_layer_decay_without_a_layered_module_is_an_error():
    from pe_dense.mm import LayerDecayOptimWrapperConstructor
    ctor = LayerDecayOptimWrapperConstructor(dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=1.0)),
                                             dict(layer_decay_rate=0.9))
    with pytest.raises(ValueError, match="get_layer_id"):
        ctor(nn.Linear(2, 2))
