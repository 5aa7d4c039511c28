# A tiny linear probe (mmseg EncoderDecoder, frozen 2-block PE-Spatial-T, 64 px views) for the feature-cache tests.
# The tests set data_root (a photo set written at run time) and feature_cache.dir.
custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.heads.seg', 'pe_dense.features'], allow_failed_imports=False)
default_scope = 'mmseg'
runner_type = 'FeatureCacheRunner'
randomness = dict(seed=0)
crop_size = (64, 64)
data_root = 'unset'

model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True,
                           size=crop_size, pad_val=0, seg_pad_val=255),
    backbone=dict(type='PEBackbone', model_name='PE-Spatial-T16-512', frozen=True, out_indices=(-1,),
                  model_overrides=dict(layers=2)),
    # the ADE20k probe's head (BN + 1x1 conv), with dropout on so that model-side randomness is part of the test
    decode_head=dict(type='LinearProbeHead', in_channels=192, in_index=(0,), probe='bn_linear', patch_size=16,
                     num_classes=4, norm_cfg=dict(type='BN'), dropout_ratio=0.1, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='BaseSegDataset', data_root=data_root, data_prefix=dict(img_path='images', seg_map_path='labels'),
                 img_suffix='.png', seg_map_suffix='.png', metainfo=dict(classes=('c0', 'c1', 'c2', 'c3')),
                 pipeline=train_pipeline))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None

# 4 images, batch 2: 2 iterations per epoch; 6 iterations = 3 epochs over 2 views (views 0, 1, 0)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6, val_interval=1000)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2, weight_decay=1e-4))
param_scheduler = []
default_hooks = dict(timer=dict(type='IterTimerHook'), logger=dict(type='LoggerHook', interval=1),
                     param_scheduler=dict(type='ParamSchedulerHook'),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000))
log_level = 'WARNING'
feature_cache = dict(dir=None, num_views=2, aug_seed=0, dtype='float32', shard_size=3, batch_size=2)
