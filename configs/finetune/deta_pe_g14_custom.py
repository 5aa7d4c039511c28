# DETA on PE-Spatial-G14-448 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule and schedule
# arithmetic: _base_/deta_custom.py). This is not the released 4-stage G recipe (deta_pe_g14_*.py: Objects365 then
# COCO at 1728/1824 px on 64 GPUs): it is the 1024 px setting of the T/S/B/L templates with G's global blocks
# (12/24/36/49), drop path 0.4 and, as the recipe, activation checkpointing in every block.
#
# Patch 14 -> 16 (as the released G detectors): convert the weights once,
#   python tools/convert_checkpoint.py PE-Spatial-G14-448.pt PE-Spatial-G16.pt --patch-size 16
# Memory: G (1.9 B parameters) needs an 80 GB GPU at batch 1 with AMP (--amp); batch 1 -> lr by the square-root
# rule 7e-5 / sqrt(2) = 5e-5 (the release's lr at batch 64). frozen_backbone=True trains the heads on 40 GB.
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-G16.pt
_base_ = './_base_/deta_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-G14-448', model_overrides=dict(patch_size=16), window_size=32,
                  global_blocks=(12, 24, 36, 49), pos_grid=32, drop_path_rate=0.4, grad_checkpointing=True),
    neck=dict(in_channels=1536))
train_dataloader = dict(batch_size=1)
base_lr = 5e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr))
auto_scale_lr = dict(base_batch_size=1)
