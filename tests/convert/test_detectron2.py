"""detectron2 PE Mask R-CNN -> our mmdet Mask R-CNN, on checkpoints built in the released key layouts.

The layouts (``layouts/d2_mask_rcnn_pe_spatial_g_{coco,lvis}.json``, copies of ``/work/shared/layouts``) list every
key and shape of the released G checkpoints. The full-size tensors (~1B parameters) are built on the ``meta`` device
for key/shape checks; values are checked on real tensors for the neck and heads and a backbone subset.
"""
import json
import os
import re

import pytest
import torch

from pe_dense.convert.detectron2 import NotADetectron2MaskRCNN, convert_d2_mask_rcnn, map_d2_key

HERE = os.path.dirname(__file__)
CONFIGS = os.path.join(HERE, "..", "..", "configs")
NUM_BLOCKS = 50


def layout(name):
    with open(os.path.join(HERE, "layouts", f"d2_mask_rcnn_pe_spatial_g_{name}.json")) as f:
        return json.load(f)


def meta_checkpoint(name):
    return {"model": {k: torch.empty(v, device="meta") for k, v in layout(name).items()}, "iteration": 1}


def our_model(name, layers=2):
    """Our G Mask R-CNN from the config, cut to ``layers`` blocks (every block has the same keys).

    Parameter initialisation is skipped (the values are overwritten or unused): building G-width layers with
    their random init takes half a minute on a loaded CPU.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from pe_dense.engine.runner import build_config

    register_all_modules()
    cfg = build_config(os.path.join(CONFIGS, f"mask_rcnn_pe_g14_{name}.py"))
    cfg.model.backbone.model_overrides = dict(patch_size=16, layers=layers)
    with pytest.MonkeyPatch.context() as mp:
        for cls in (torch.nn.Linear, torch.nn.modules.conv._ConvNd):
            mp.setattr(cls, "reset_parameters", lambda self: None)
        mp.setattr(torch.nn.init, "xavier_uniform_", lambda t, *a, **k: t)
        return MODELS.build(cfg.model)


def expand_blocks(shapes, layers_built):
    """Shapes of a full 50-block model from one built with fewer blocks."""
    out = {}
    for k, v in shapes.items():
        m = re.match(r"backbone\.transformer\.resblocks\.(\d+)\.(.+)", k)
        if m is None:
            out[k] = v
        elif int(m.group(1)) == 0:
            for i in range(NUM_BLOCKS):
                out[f"backbone.transformer.resblocks.{i}.{m.group(2)}"] = v
    return out


@pytest.fixture(scope="module")
def lvis_model():
    return our_model("lvis")


@pytest.mark.parametrize("name", ["coco", "lvis"])
def test_full_layout_converts_to_exact_model_keys_and_shapes(name, lvis_model):
    model = lvis_model if name == "lvis" else our_model("coco")
    want = expand_blocks({k: tuple(v.shape) for k, v in model.state_dict().items()}, 2)
    got = {k: tuple(v.shape) for k, v in convert_d2_mask_rcnn(meta_checkpoint(name)).items()}
    assert set(got) == set(want), (sorted(set(got) - set(want))[:5], sorted(set(want) - set(got))[:5])
    assert got == want
    dropped = [k for k in layout(name) if map_d2_key(k) is None]
    assert len(dropped) == 104 and all("rope" in k for k in dropped)  # README: 104 RoPE buffers


def test_values_follow_their_keys_and_model_loads_strictly(lvis_model):
    torch.manual_seed(0)
    src = {}
    for k, shape in layout("lvis").items():
        m = re.match(r"backbone\.net\.transformer\.resblocks\.(\d+)\.", k)
        if m and int(m.group(1)) >= 2:
            continue  # the built model has 2 blocks
        src[k] = torch.randn(shape)
    out = convert_d2_mask_rcnn({"model": src})
    pairs = {
        "backbone.net.conv1.weight": "backbone.conv1.weight",
        "backbone.net.transformer.resblocks.1.mlp.c_fc.weight": "backbone.transformer.resblocks.1.mlp.c_fc.weight",
        "backbone.simfp_2.1.weight": "neck.stages.0.rescale.1.weight",  # LN between the two deconvs
        "backbone.simfp_2.3.weight": "neck.stages.0.rescale.3.weight",
        "backbone.simfp_2.4.norm.bias": "neck.stages.0.lateral.1.bias",
        "backbone.simfp_3.0.weight": "neck.stages.1.rescale.weight",
        "backbone.simfp_4.0.weight": "neck.stages.2.lateral.0.weight",
        "backbone.simfp_5.2.norm.weight": "neck.stages.3.output.1.weight",
        "proposal_generator.rpn_head.conv.conv1.bias": "rpn_head.rpn_conv.1.conv.bias",
        "proposal_generator.rpn_head.objectness_logits.weight": "rpn_head.rpn_cls.weight",
        "proposal_generator.rpn_head.anchor_deltas.weight": "rpn_head.rpn_reg.weight",
        "roi_heads.box_head.conv1.weight": "roi_head.bbox_head.shared_convs.0.conv.weight",
        "roi_heads.box_head.conv4.norm.weight": "roi_head.bbox_head.shared_convs.3.ln.weight",
        "roi_heads.box_head.fc1.weight": "roi_head.bbox_head.shared_fcs.0.weight",
        "roi_heads.box_predictor.cls_score.weight": "roi_head.bbox_head.fc_cls.weight",  # background last in both
        "roi_heads.box_predictor.bbox_pred.bias": "roi_head.bbox_head.fc_reg.bias",
        "roi_heads.box_predictor.fed_loss_cls_weights": "roi_head.bbox_head.fed_loss_cls_weights",
        "roi_heads.mask_head.mask_fcn2.norm.bias": "roi_head.mask_head.convs.1.ln.bias",
        "roi_heads.mask_head.deconv.weight": "roi_head.mask_head.upsample.weight",
        "roi_heads.mask_head.predictor.weight": "roi_head.mask_head.conv_logits.weight",
    }
    for d2_key, our_key in pairs.items():
        assert torch.equal(out[our_key], src[d2_key]), (d2_key, our_key)
    assert torch.equal(out["backbone.positional_embedding"], src["backbone.net.positional_embedding"][0])
    # every output tensor is one input tensor, each used once
    ids = [id(v) for v in out.values() if v.ndim and v.shape != (1024, 1536)]
    assert len(ids) == len(set(ids))
    missing, unexpected = lvis_model.load_state_dict(out, strict=True)
    assert not missing and not unexpected


def test_bare_state_dict_is_accepted():
    sd = meta_checkpoint("coco")["model"]
    assert len(convert_d2_mask_rcnn(sd)) == len(sd) - 104


def test_wrong_checkpoints_get_clear_errors():
    deta = {"model": {"backbone.0.body.conv1.weight": torch.zeros(1), "transformer.decoder.x": torch.zeros(1)}}
    with pytest.raises(NotADetectron2MaskRCNN, match="DETA"):
        convert_d2_mask_rcnn(deta)
    ours = {"neck.stages.0.lateral.0.weight": torch.zeros(1), "roi_head.x": torch.zeros(1)}
    with pytest.raises(NotADetectron2MaskRCNN, match="already in our mmdet layout"):
        convert_d2_mask_rcnn(ours)
    odd = dict(meta_checkpoint("coco")["model"])
    odd["roi_heads.keypoint_head.x.weight"] = torch.empty(1, device="meta")
    with pytest.raises(NotADetectron2MaskRCNN, match="keypoint_head"):
        convert_d2_mask_rcnn(odd)
