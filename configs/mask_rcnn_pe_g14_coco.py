# Mask R-CNN, PE-Spatial G (patch 16), COCO, 36 epochs: the published recipe (57.8 box AP / 50.3 mask AP).
#
# Schedule arithmetic (iteration-based, as detectron2's ViTDet):
#   one epoch = 118,000 images (COCO train2017 has 118,287; ViTDet counts 118k)
#   batch 64 (64 GPUs x 1 image)       -> 118,000 / 64 = 1,843.75 iterations per epoch
#   36 epochs                          -> 36 x 1,843.75 = 66,375 iterations
#   lr x0.1 at 88.9% and 96.3% of training (ViTDet's 163,889 / 177,546 of 184,375) -> 59,000 and 63,917
#   warm-up: 250 iterations, linear from 0.001 x lr
# On N GPUs x B images, keep N x B = 64, or pass --auto-scale-lr (linear lr scaling from batch 64).
_base_ = './_base_/mask_rcnn_pe.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-G14-448', model_overrides=dict(patch_size=16),
                  global_blocks=(12, 24, 36, 49), drop_path_rate=0.5,
                  # As the released detectron2 backbone: block LayerNorm eps 1e-6 and ViTDet's zero-padded windows
                  # (no padding at 1024 px: 64 tokens = 2 windows of 32). Its RoPE, arange(n)/n*32 + 1, is the
                  # base's rope_mode='window' with the default rope_ref_size (32).
                  norm_eps=1e-6, window_padding='zeros'),
    neck=dict(in_channels=1536))

max_iters = 66_375
lr_steps = [59_000, 63_917]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=lr_steps, gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.9))
train_dataloader = dict(batch_size=1)
