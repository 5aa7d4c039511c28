# NYUv2 monocular depth on a frozen PE-Spatial backbone (PE_FACTS sections 6 and 8), mmseg 1.2.2.
#
# The PE paper states: DPT head on ONE layer, 20 epochs, best checkpoint by validation RMSE (Spatial G: 0.262 at
# the best layer, 0.275 at the last). Where it is silent we take DINOv2's NYU numbers (section 8): crop 416x544,
# rotation 2.5 deg, flip, BTS colour aug, SiLog (lambda 0.15) + 0.5 x gradient loss, AdamW lr 5e-3 wd 0.01,
# cosine with warm-up, grad clip 35, batch 16, flip TTA, Eigen crop, depth range (1e-3, 10] m.
# Size configs (depth_pe_<size>_nyu.py) set the backbone, its width and patch.
#
# Schedule arithmetic (epoch-based; mmengine counts iterations per epoch as ceil(images / batch)):
#   NYUv2 Eigen train split (BTS "sync" list, the one DINOv2 uses): 24,231 images, test 654
#   batch 16 -> ceil(24,231 / 16) = 1,515 iterations per epoch
#   20 epochs -> 30,300 iterations (DINOv2: 38,400 at batch 16 = 25.4 epochs)
#   warm-up: linear from 1e-3 x lr over `warmup_iters` = 1,515 (one epoch; DINOv2 warms up, length our choice),
#   then cosine to 0 over the remaining 28,785 iterations; validation after every epoch, best RMSE kept.
# On N GPUs x B images keep N x B = 16, or pass --auto-scale-lr.
#
# Data (mmseg's NYU layout): {data_root}images/{train,test}/NAME.jpg + annotations/{train,test}/NAME.png (uint16
# millimetres, 0 = no measurement); data_root from PE_DENSE_DATA (the folder holding nyu/) or
# --cfg-options data_root=/path/to/nyu/. Weights: set model.backbone.checkpoint to a local PE-Spatial file.
custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.engine', 'pe_dense.heads.depth', 'pe_dense.features'],
                      allow_failed_imports=False)
_base_ = ['./feature_cache.py']  # runner_type, feature_cache (dir=None: train from images), mmseg scope

# ----------------------------------------------------------------------------------------------------- backbone
pe_model = 'PE-Spatial-B16-512'
pe_width = 768
pe_patch = 16
pe_checkpoint = None
depth_layer = -1          # the one layer the DPT head reads (paper: "best layer" or the last; last by default)
min_depth, max_depth = 1e-3, 10.0
crop_size = (416, 544)
batch_size = 16
max_epochs = 20
iters_per_epoch = 1_515   # ceil(24,231 / 16)
warmup_iters = iters_per_epoch

depth_losses = [
    dict(type='DepthSiLogLoss', lambda_=0.15, min_depth=min_depth, max_depth=max_depth, loss_weight=1.0),
    # per image over height and width (DINOv2's version is zero at batch 2, see heads/depth/losses.py)
    dict(type='DepthGradientLoss', min_depth=min_depth, max_depth=max_depth, loss_weight=0.5),
]
model = dict(
    type='SlidingDepthEstimator',
    data_preprocessor=dict(
        # = pe_dense.mm.PE_DATA_PREPROCESSOR; pads to a multiple of the patch, depth padding = 0 (invalid)
        type='DepthDataPreProcessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True,
        size_divisor=pe_patch, pad_val=0, depth_pad_val=0, test_cfg=dict(size_divisor=pe_patch)),
    backbone=dict(type='PEBackbone', model_name=pe_model, checkpoint=pe_checkpoint, out_indices=(depth_layer,),
                  frozen=True, output_cls_token=True),
    decode_head=dict(
        type='DPTDepthHead', in_channels=pe_width, channels=256, readout='project',
        in_index=None,  # one backbone output -> all four reassemble branches (heads/depth/dpt.py)
        # sigmoid x max_depth (DINOv2's scale_up, mmseg's VPD head) instead of DINOv2's default ReLU + min_depth:
        # a fresh head can start with every pixel on the ReLU's flat side and never move (seen on random features)
        output=dict(mode='regression', activation='sigmoid', min_depth=min_depth, max_depth=max_depth),
        loss_decode=depth_losses),
    train_cfg=dict(),
    test_cfg=dict(mode='whole', flip=True))  # flip TTA: mean of the image and its mirror

# --------------------------------------------------------------------------------------------------------- data
dataset_type = 'NYUDataset'
data_root = '{{$PE_DENSE_DATA:data}}/nyu/'
meta_keys = ('img_path', 'depth_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
             'flip_direction', 'category_id')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CheckedLoadDepthAnnotation', depth_rescale_factor=1e-3),  # uint16 mm -> m, bad files named
    # image bilinear, depth nearest; the uncovered corners are 0 = invalid
    dict(type='RandomRotate', prob=1.0, degree=2.5, pad_val=0, seg_pad_val=0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='DepthColorAug', prob=0.5),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CheckedLoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=batch_size, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/train', depth_map_path='annotations/train')))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline, test_mode=True,
                 data_prefix=dict(img_path='images/test', depth_map_path='annotations/test')))
test_dataloader = val_dataloader
val_evaluator = dict(type='PEDepthMetric', min_depth_eval=min_depth, max_depth_eval=max_depth, crop_type='eigen')
test_evaluator = val_evaluator

# -------------------------------------------------------------------------------------------------- optimisation
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=5e-3, weight_decay=0.01),
                     clip_grad=dict(max_norm=35, norm_type=2))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_epochs * iters_per_epoch),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

# ------------------------------------------------------------------------------------------------------ runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1, max_keep_ckpts=1, save_best='rmse',
                    rule='less', backend_args=dict(backend='pe_atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir sets draw=True, test_out_dir=DIR: photo | prediction | ground truth per image
    visualization=dict(type='DepthVisualizationHook', draw=False))
custom_hooks = [dict(type='PreflightHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
