# Mask R-CNN (ViTDet style) on PE-Spatial-L14-448 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule
# and schedule arithmetic: _base_/mask_rcnn_custom.py). Backbone as mask_rcnn_pe_l14_coco.py: patch 16, windows of 32
# tokens at 1024 px, global blocks 5/11/17/23, drop path 0.4, layer-wise lr decay 0.8.
#
# Patch 14 -> 16: the detectors run L and G at patch 16, as the released PE detectors (1024 px = 64 x 64 tokens,
# two windows of 32 per side; 1024 is not a multiple of 14). Convert the released file once (patch kernel resized
# bicubically; the 32 x 32 pretraining position grid and RoPE reference are kept):
#   python tools/convert_checkpoint.py PE-Spatial-L14-448.pt PE-Spatial-L16.pt --patch-size 16
# A patch-14 file given directly is refused with a message naming this conversion.
# Layer: the last block feeds the simple feature pyramid (strides 4-64), the layer PE-Spatial is trained to make
# spatial. Resolution: 1024 px (LSJ crops), so a 32 px object covers 2 x 2 tokens; raise it for small objects.
# Memory: --grad-checkpointing and --amp for batch 2 on 24 GB.
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-L16.pt
_base_ = './_base_/mask_rcnn_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-L14-448', model_overrides=dict(patch_size=16),
                  global_blocks=(5, 11, 17, 23), drop_path_rate=0.4),
    neck=dict(in_channels=1024))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))
