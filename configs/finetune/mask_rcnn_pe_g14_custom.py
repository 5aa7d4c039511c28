# Mask R-CNN (ViTDet style) on PE-Spatial-G14-448 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule
# and schedule arithmetic: _base_/mask_rcnn_custom.py). Backbone as mask_rcnn_pe_g14_coco.py: patch 16, windows of 32
# tokens at 1024 px, global blocks 12/24/36/49, drop path 0.5, layer-wise lr decay 0.9.
#
# Patch 14 -> 16: the detectors run L and G at patch 16, as the released PE detectors (1024 px = 64 x 64 tokens,
# two windows of 32 per side; 1024 is not a multiple of 14). Convert the released file once (patch kernel resized
# bicubically; the 32 x 32 pretraining position grid and RoPE reference are kept):
#   python tools/convert_checkpoint.py PE-Spatial-G14-448.pt PE-Spatial-G16.pt --patch-size 16
# A patch-14 file given directly is refused with a message naming this conversion.
# Layer: the last block feeds the simple feature pyramid (strides 4-64), the layer PE-Spatial is trained to make
# spatial. Resolution: 1024 px (LSJ crops), so a 32 px object covers 2 x 2 tokens; raise it for small objects.
# Memory: G (1.9 B parameters) needs --grad-checkpointing --amp, batch 1 on 80 GB; lr by the square-root rule
# from the released 5e-5 at batch 64: 5e-5 x sqrt(1 / 64) = 6.3e-6. frozen_backbone=True trains the heads only.
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-G16.pt
_base_ = './_base_/mask_rcnn_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-G14-448', model_overrides=dict(patch_size=16),
                  global_blocks=(12, 24, 36, 49), drop_path_rate=0.5, grad_checkpointing=True),
    neck=dict(in_channels=1536))
train_dataloader = dict(batch_size=1)
base_lr = 6.3e-6
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=0.9))
auto_scale_lr = dict(base_batch_size=1)
