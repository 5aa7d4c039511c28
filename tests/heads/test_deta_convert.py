"""Converting the released PE DETA checkpoint (key layout of deta_coco_1824pix.pth) into our DETA model.

The released file is 2 GB; the test builds a random state dict from its key/shape list
(``/work/shared/layouts/deta_pe_spatial_g_coco1824.json``) with the backbone width scaled down
(1536 -> 64), loads the conversion strictly into our model built at the matching size, and checks values.
"""
import json
import os

import pytest
import torch
from _deta_tiny import build, make_sample
from pe_dense.heads.deta import stage1_assigner_cfg, stage2_assigner_cfg

from pe_dense.convert.deta import COCO80_CATEGORY_IDS, _map_key, convert_deta_checkpoint

LAYOUT = "/work/shared/layouts/deta_pe_spatial_g_coco1824.json"
WIDTH = 64
SCALE = {1536: WIDTH, 768: WIDTH // 2, 4608: 3 * WIDTH, 8960: 2 * WIDTH}

pytestmark = pytest.mark.skipif(not os.path.isfile(LAYOUT), reason=f"{LAYOUT} not available")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _layout():
    with open(LAYOUT) as f:
        return json.load(f)


def _random_release_state_dict():
    torch.manual_seed(0)
    sd = {}
    for key, shape in _layout().items():
        if "rope" in key:  # derived tables, dropped by the converter: keep them tiny
            shape = [1, 1]
        if key.startswith(("backbone.", "input_proj.")):  # 768 is also 3 x 256 in the decoder: scale only here
            shape = [SCALE.get(s, s) for s in shape]
        sd[key] = torch.randn(shape)
    for key in list(sd):  # DETA registers the same modules under two names: same values
        if key.startswith("transformer.decoder.class_embed.") or key.startswith("transformer.decoder.bbox_embed."):
            sd[key] = sd[key[len("transformer.decoder."):]]
    return sd


def _our_model(num_classes=80, num_queries=50):
    enc_layer = dict(self_attn_cfg=dict(embed_dims=256, num_levels=5, dropout=0.0, batch_first=True),
                     ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0))
    dec_layer = dict(self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0, batch_first=True),
                     cross_attn_cfg=dict(embed_dims=256, num_levels=5, dropout=0.0, batch_first=True),
                     ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0))
    return build(dict(
        type="DETA", num_queries=num_queries, num_feature_levels=5,
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type="PEBackbone", model_name="PE-Spatial-G14-448",
                      model_overrides=dict(width=WIDTH, mlp_width=2 * WIDTH, patch_size=16), pos_grid=24,
                      pos_embed_resize="tile", window_size=24, global_blocks=(12, 24, 36, 49)),
        neck=dict(type="DETAPyramid", in_channels=WIDTH, out_channels=256, num_outs=5),
        encoder=dict(num_layers=6, layer_cfg=enc_layer),
        decoder=dict(num_layers=6, return_intermediate=True, layer_cfg=dec_layer, post_norm_cfg=None),
        positional_encoding=dict(num_feats=128, normalize=True, offset=-0.5),
        bbox_head=dict(type="DETAHead", num_classes=num_classes,
                       loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                       loss_bbox=dict(type="L1Loss", loss_weight=5.0), loss_iou=dict(type="GIoULoss", loss_weight=2.0)),
        train_cfg=dict(stage1=stage1_assigner_cfg(), stage2=stage2_assigner_cfg(num=None)),
        test_cfg=dict(max_per_img=100)))


def test_every_released_key_is_mapped_or_dropped_on_purpose():
    keys = list(_layout())
    mapped = [k for k in keys if _map_key(k) is not None]
    dropped = [k for k in keys if _map_key(k) is None]
    assert len(keys) == 1183
    # 104 RoPE tables + 7 x (2 + 6) aliased decoder.class_embed / decoder.bbox_embed keys
    assert len(dropped) == 104 + 56
    assert len(set(_map_key(k) for k in mapped)) == len(mapped)  # no two keys collide


def test_conversion_loads_strictly_and_keeps_values():
    sd = _random_release_state_dict()
    model = _our_model()
    converted = convert_deta_checkpoint({"model": sd, "optimizer": {}, "epoch": 2})
    model.load_state_dict(converted, strict=True)
    ours = model.state_dict()
    eq = torch.testing.assert_close
    eq(ours["backbone.positional_embedding"], sd["backbone.0.body.positional_embedding"][0])
    eq(ours["backbone.transformer.resblocks.49.ls_2.gamma"], sd["backbone.0.body.transformer.resblocks.49.ls_2.gamma"])
    eq(ours["neck.fpn1.weight"], sd["backbone.0.body.fpn1.0.weight"])
    eq(ours["neck.mapper.convs.0.conv.weight"], sd["input_proj.0.0.weight"])
    eq(ours["neck.mapper.extra_convs.0.gn.bias"], sd["input_proj.3.1.bias"])
    eq(ours["neck.mapper.extra_convs.1.conv.weight"], sd["input_proj.4.0.weight"])
    eq(ours["decoder.layers.3.norms.0.weight"], sd["transformer.decoder.layers.3.norm2.weight"])  # after self-attn
    eq(ours["decoder.layers.3.norms.1.weight"], sd["transformer.decoder.layers.3.norm1.weight"])  # after cross-attn
    eq(ours["decoder.layers.3.self_attn.attn.in_proj_weight"],
       sd["transformer.decoder.layers.3.self_attn.in_proj_weight"])
    eq(ours["encoder.layers.5.ffn.layers.1.weight"], sd["transformer.encoder.layers.5.linear2.weight"])
    eq(ours["pix_trans_fc.weight"], sd["transformer.pix_trans.weight"])
    eq(ours["memory_trans_norm.bias"], sd["transformer.enc_output_norm.bias"])
    eq(ours["bbox_head.reg_branches.2.4.bias"], sd["bbox_embed.2.layers.2.bias"])
    # class rows: decoder branches keep the 80 used COCO ids; the proposal branch keeps row 0 (object score)
    eq(ours["bbox_head.cls_branches.0.weight"], sd["class_embed.0.weight"][COCO80_CATEGORY_IDS])
    eq(ours["bbox_head.cls_branches.0.bias"][0], sd["class_embed.0.bias"][1])  # person = category id 1
    eq(ours["bbox_head.cls_branches.6.bias"][0], sd["class_embed.6.bias"][0])


def test_converted_model_runs():
    model = _our_model(num_queries=50)
    model.load_state_dict(convert_deta_checkpoint(_random_release_state_dict()), strict=True)
    model.eval()
    data = model.data_preprocessor(dict(inputs=[torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)],
                                        data_samples=[make_sample((128, 128), [], [])]), False)
    with torch.no_grad():
        pred = model.predict(data["inputs"], data["data_samples"])[0].pred_instances
    assert len(pred) > 0 and torch.isfinite(pred.bboxes).all()


def test_keeping_all_91_classes():
    model = _our_model(num_classes=91)
    model.load_state_dict(convert_deta_checkpoint(_random_release_state_dict(), classes=None), strict=True)


def test_bad_inputs_have_clear_errors():
    sd = _random_release_state_dict()
    sd["transformer.decoder.class_embed.0.bias"] = sd["class_embed.0.bias"] + 1
    with pytest.raises(ValueError, match="one module"):
        convert_deta_checkpoint(sd)
    with pytest.raises(KeyError, match="DETA-layout"):
        convert_deta_checkpoint({"roi_heads.box_predictor.cls_score.weight": torch.zeros(2, 2)})
    sd = _random_release_state_dict()
    sd["class_embed.0.weight"] = sd["class_embed.0.weight"][:80]
    sd["transformer.decoder.class_embed.0.weight"] = sd["class_embed.0.weight"]
    with pytest.raises(ValueError, match="91 COCO"):
        convert_deta_checkpoint(sd)
