# ADE20k linear probe ("linear": last block, BN + 1x1 conv) on frozen PE-Spatial-G14-448; PE reports 49.3 mIoU.
# Protocol and schedule arithmetic: _base_/seg_probe_ade20k.py (40k iterations at batch 16, AdamW lr 1e-3, poly).
# Multi-layer + multi-scale ("+ms"): seg_probe_pe_g14_ade20k_ms.py.
# Patch 14: each 512 crop is zero-padded to 518 px (37x37 tokens) by the backbone and the head crops the
# upsampled logits back to 512 (see the base config). To train on 518 crops instead, set the RandomCrop crop_size,
# model.data_preprocessor.size and model.test_cfg.crop_size to (518, 518).
# PE-Spatial G has no cls token: probe_cls_token=True / output_cls_token=True are refused with a message.
_base_ = './_base_/seg_probe_ade20k.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-G14-448'),  # 50 blocks, width 1536, patch 14
    decode_head=dict(in_channels=1536, patch_size=14))
