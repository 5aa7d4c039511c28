# ADE20k linear probe ("linear": last block, BN + 1x1 conv) on frozen PE-Spatial-L14-448; PE reports 48.1 mIoU.
# Protocol and schedule arithmetic: _base_/seg_probe_ade20k.py (40k iterations at batch 16, AdamW lr 1e-3, poly).
# Multi-layer + multi-scale ("+ms"): seg_probe_pe_l14_ade20k_ms.py.
# Patch 14: each 512 crop is zero-padded to 518 px (37x37 tokens) by the backbone and the head crops the
# upsampled logits back to 512 (see the base config). To train on 518 crops instead, set the RandomCrop crop_size,
# model.data_preprocessor.size and model.test_cfg.crop_size to (518, 518).
# Concatenating the cls token (DINOv2's linear probe): --cfg-options model.backbone.output_cls_token=True
# model.decode_head.use_cls_token=True
_base_ = './_base_/seg_probe_ade20k.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-L14-448'),  # 24 blocks, width 1024, patch 14
    decode_head=dict(in_channels=1024, patch_size=14))
