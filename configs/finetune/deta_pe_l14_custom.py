# DETA on PE-Spatial-L14-448 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule and schedule
# arithmetic: _base_/deta_custom.py). Backbone as deta_pe_l14_coco.py.
#
# Patch 14 -> 16: the detectors run L and G at patch 16, as the released PE detectors do (1024 px = 64 x 64 tokens,
# two windows of 32 per side; at patch 14, 1024 is not a multiple of the patch and windows would not tile). Convert
# the released file once: the patch kernel is resized bicubically, the 32 x 32 position grid and RoPE reference stay
# those of pretraining:
#   python tools/convert_checkpoint.py PE-Spatial-L14-448.pt PE-Spatial-L16.pt --patch-size 16
# A patch-14 file given directly is refused with a message naming this conversion.
# Layer: the last block feeds the pyramid (see deta_pe_t16_custom.py). Memory: on 24 GB use batch 1 with
# --grad-checkpointing --amp and, by the square-root rule, lr 7e-5 / sqrt(2) = 5e-5:
#   train_dataloader.batch_size=1 optim_wrapper.optimizer.lr=5e-5 auto_scale_lr.base_batch_size=1
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-L16.pt
_base_ = './_base_/deta_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-L14-448', model_overrides=dict(patch_size=16), window_size=32,
                  global_blocks=(5, 11, 17, 23), pos_grid=32, drop_path_rate=0.4),
    neck=dict(in_channels=1024))
