# ADE20k linear probe ("linear": last block, BN + 1x1 conv) on frozen PE-Spatial-T16-512; PE reports 27.6 mIoU.
# Protocol and schedule arithmetic: _base_/seg_probe_ade20k.py (40k iterations at batch 16, AdamW lr 1e-3, poly).
# Multi-layer + multi-scale ("+ms"): seg_probe_pe_t16_ade20k_ms.py.
# Concatenating the cls token (DINOv2's linear probe): --cfg-options model.backbone.output_cls_token=True
# model.decode_head.use_cls_token=True
_base_ = './_base_/seg_probe_ade20k.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-T16-512'),  # 12 blocks, width 192, patch 16
    decode_head=dict(in_channels=192, patch_size=16))
