"""Small DETA models and samples for the tests (tiny PE-T backbone, narrow transformer)."""
from __future__ import annotations

import pe_dense.heads.deta  # noqa: F401
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

import pe_dense.mm  # noqa: F401  registers PEBackbone, DETAPyramid (and DETA through pe_dense.heads.deta)


def tiny_deta_cfg(num_classes: int = 3, num_queries: int = 50, embed: int = 64, layers: int = 2,
                  enc_layers: int = 1, dec_layers: int = 2, **overrides) -> dict:
    """A DETA with PE-Spatial-T (``layers`` blocks), a 64-wide transformer and the DETA assignment defaults."""
    heads = 4
    cfg = dict(
        type="DETA", num_queries=num_queries, num_feature_levels=5,
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=dict(type="PEBackbone", model_name="PE-Spatial-T16-512", model_overrides=dict(layers=layers)),
        neck=dict(type="DETAPyramid", in_channels=192, out_channels=embed, num_outs=5),
        encoder=dict(num_layers=enc_layers, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_levels=5, num_heads=heads, dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=2 * embed, ffn_drop=0.0))),
        decoder=dict(num_layers=dec_layers, return_intermediate=True, post_norm_cfg=None, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=heads, dropout=0.0, batch_first=True),
            cross_attn_cfg=dict(embed_dims=embed, num_levels=5, num_heads=heads, dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=2 * embed, ffn_drop=0.0))),
        positional_encoding=dict(num_feats=embed // 2, normalize=True, offset=-0.5),
        bbox_head=dict(type="DETAHead", num_classes=num_classes, embed_dims=embed,
                       loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                       loss_bbox=dict(type="L1Loss", loss_weight=5.0),
                       loss_iou=dict(type="GIoULoss", loss_weight=2.0)),
        train_cfg=dict(stage1=pe_dense.heads.deta.stage1_assigner_cfg(),
                       stage2=pe_dense.heads.deta.stage2_assigner_cfg(num=None)),
        test_cfg=dict(max_per_img=20))
    cfg.update(overrides)
    return cfg


def build(cfg: dict):
    """Build an mmdet model config in mmdet's scope (the data preprocessor is an mmdet module)."""
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg)
    model.init_weights()
    return model


def make_sample(img_hw, boxes, labels, scale_factor=(1.0, 1.0), ori_hw=None) -> DetDataSample:
    h, w = img_hw
    s = DetDataSample(metainfo=dict(img_shape=(h, w), batch_input_shape=(h, w), ori_shape=ori_hw or (h, w),
                                    scale_factor=scale_factor, img_id=0))
    s.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                  labels=torch.tensor(labels, dtype=torch.long))
    return s
