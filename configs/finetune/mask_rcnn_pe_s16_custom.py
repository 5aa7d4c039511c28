# Mask R-CNN (ViTDet style) on PE-Spatial-S16-512 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule
# and schedule arithmetic: _base_/mask_rcnn_custom.py). Backbone as mask_rcnn_pe_s16_coco.py: patch 16, windows of 32
# tokens at 1024 px, global blocks 2/5/8/11, drop path 0.1, layer-wise lr decay 0.7.
# Native patch 16: the released weights load as they are.
# Layer: the last block feeds the simple feature pyramid (strides 4-64), the layer PE-Spatial is trained to make
# spatial. Resolution: 1024 px (LSJ crops), so a 32 px object covers 2 x 2 tokens; raise it for small objects.
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-S16-512.pt
_base_ = './_base_/mask_rcnn_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-S16-512', model_overrides=dict(patch_size=16),
                  global_blocks=(2, 5, 8, 11), drop_path_rate=0.1),
    neck=dict(in_channels=384))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7))
