# Mask R-CNN, PE-Spatial-S16-512 backbone, COCO, 36 epochs (schedule arithmetic as in mask_rcnn_pe_g14_coco.py:
# 66,375 iterations at batch 64, lr steps 59,000 / 63,916).
#
# Only G has a published PE detection recipe. For this size we take ViTDet's per-size choices (ViTDet-B: 4 global
# blocks evenly spaced, drop path 0.1, layer decay 0.7, lr 1e-4; ViTDet-L: drop path 0.4, layer decay 0.8):
# these are deviations from the G recipe, each a named option below. Unlike the G config, these keep PE's own pixel
# normalisation (mean = std = 127.5) and ViTDet's weight-decay exemptions (the base's): there is no release to match.
_base_ = './_base_/mask_rcnn_pe.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-S16-512', model_overrides=dict(patch_size=16),
                  global_blocks=(2, 5, 8, 11), drop_path_rate=0.1),
    neck=dict(in_channels=384))
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.7))
