# ViTDet-style Mask R-CNN on a PE-Spatial backbone (PE_FACTS section 4), COCO instance segmentation.
#
# Model, data and optimisation follow the published recipe for PE-Spatial G (detectron2 ViTDet code): patch 16,
# window attention (32 tokens) with a few global blocks, RoPE "window" positions and the 32x32 position grid tiled
# over windows, drop path, SimpleFeaturePyramid (scales 4, 2, 1, 0.5 + max-pool level, LN), RPN with 2 convs,
# 4conv1fc box head and 4conv mask head with LN, LSJ at 1024 (scale 0.1-2.0), AdamW, layer-wise lr decay.
# Size configs (mask_rcnn_pe_<size>_coco.py) set the backbone, its global blocks, drop path and lr decay.
#
# Data: `data_root` comes from the environment variable PE_DENSE_DATA (the folder holding coco/, lvis_v1/), or
# from `--cfg-options data_root=/path/to/coco/`, which tools/train.py and tools/test.py apply to every path below.
# Weights: set `model.backbone.checkpoint` to a local PE-Spatial file; the patch-14 models (L, G) must first be
# converted to patch 16 (tools/convert_checkpoint.py --patch-size 16), as the released detectors were.
custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.engine', 'pe_dense.heads.mask_rcnn'],
                      allow_failed_imports=False)
default_scope = 'mmdet'

# ----------------------------------------------------------------------------------------------------- backbone
pe_model = 'PE-Spatial-G14-448'
pe_width = 1536
pe_checkpoint = None          # local PE-Spatial weights (patch 16), e.g. '/weights/PE-Spatial-G16-448.pt'
global_blocks = (12, 24, 36, 49)
drop_path_rate = 0.5
layer_decay_rate = 0.9
image_size = 1024
num_classes = 80
norm_cfg = dict(type='LN2d', eps=1e-6)  # LayerNorm over channels in the RoI heads, as in ViTDet

model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        # = pe_dense.mm.PE_DATA_PREPROCESSOR: PE normalises RGB with mean = std = 0.5 (x 255).
        type='DetDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True,
        # Every image (LSJ training crops and test images, both at most image_size on each side) is padded to
        # image_size x image_size AFTER normalisation, with 0, as detectron2's square_pad: the padding is exactly the
        # mean. Padding the raw image with a grey level instead is off by (level - mean) / std.
        pad_mask=True, pad_size_divisor=image_size, pad_value=0),
    backbone=dict(
        type='PEBackbone', model_name=pe_model, checkpoint=pe_checkpoint, out_indices=(-1,),
        model_overrides=dict(patch_size=16),  # the released detectors use patch 16 (kernel resized from 14)
        window_size=32, global_blocks=global_blocks, rope_mode='window', pos_embed_resize='tile', pos_grid=32,
        drop_path_rate=drop_path_rate,
        grad_checkpointing=False),  # the recipe checkpoints activations for G: tools/train.py --grad-checkpointing
    neck=dict(type='SimpleFeaturePyramid', in_channels=pe_width, out_channels=256,
              scale_factors=(4.0, 2.0, 1.0, 0.5), add_pool_level=True, norm='LN', input_stride=16),
    rpn_head=dict(
        type='RPNHead', in_channels=256, feat_channels=256, num_convs=2,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(type='ContiguousRoIExtractor',  # mmdet's SingleRoIExtractor, safe for any map layout
                                roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0, aligned=True),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256, fc_out_channels=1024,
            norm_cfg=norm_cfg, roi_feat_size=7, num_classes=num_classes,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(type='ContiguousRoIExtractor',  # mmdet's SingleRoIExtractor, safe for any map layout
                                roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0, aligned=True),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=256, conv_out_channels=256, norm_cfg=norm_cfg,
                       num_classes=num_classes,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                          match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            mask_size=28, pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)))

# --------------------------------------------------------------------------------------------------------- data
dataset_type = 'CocoDataset'
data_root = '{{$PE_DENSE_DATA:data}}/coco/'
backend_args = None
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True, backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SanitizeBoxes', num_classes=num_classes),
    # Large-scale jitter (LSJ): resize by 0.1-2.0 of image_size, crop image_size, pad in the preprocessor.
    dict(type='RandomResize', scale=(image_size, image_size), ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=(image_size, image_size), recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=False, backend_args=backend_args),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),  # the preprocessor pads to a square
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=1,  # per GPU; the recipe's batch 64 = 64 GPUs x 1 (see the size configs)
    num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), filter_cfg=dict(filter_empty_gt=True, min_size=0),
                 pipeline=train_pipeline, backend_args=backend_args))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), test_mode=True, pipeline=test_pipeline,
                 backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val2017.json',
                     metric=['bbox', 'segm'], format_only=False, backend_args=backend_args)
test_evaluator = val_evaluator

# -------------------------------------------------------------------------------------------------- optimisation
# AdamW with layer-wise lr decay: block i of an n-block backbone gets lr * rate ** (n + 1 - (i + 1)), the patch
# embedding rate ** (n + 1); neck and heads the full lr. No weight decay on norms and position embeddings (ViTDet).
base_lr = 5e-5
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate, norm_decay_mult=0.0,
                       custom_keys={'positional_embedding': dict(decay_mult=0.0),
                                    'class_embedding': dict(decay_mult=0.0)}),
    clip_grad=None)
# AMP (the recipe trains in mixed precision): tools/train.py --amp switches to mmengine's AmpOptimWrapper.

# Schedule placeholders; the size/dataset configs set the iteration counts and write out the arithmetic.
max_iters = 66_375
lr_steps = [59_000, 63_916]
warmup_iters = 250
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=lr_steps, gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=64)

# ------------------------------------------------------------------------------------------------------ runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Atomic writes (temp file + os.replace), see pe_dense.engine.checkpoint_io.
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3,
                    backend_args=dict(backend='pe_atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
custom_hooks = [dict(type='PreflightHook'), dict(type='IterationSeedHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
