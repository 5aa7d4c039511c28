# DETA ("NMS Strikes Back") on a PE-Spatial backbone, COCO detection (PE_FACTS section 4).
#
# Model: two-stage Deformable DETR with iterative box refinement (mmdet), DETA's per-level query selection,
# IoU-based one-to-many assignment at both stages and NMS at test (pe_dense.heads.deta). 900 queries, FFN 2048,
# 5 levels from the DETA pyramid on the last PE block (p3 by 2x transposed conv, p4, p5 by max-pool, then two
# stride-2 3x3 convs), 6 encoder + 6 decoder layers, dropout 0, focal/L1/GIoU weights 1/5/2 (DETA's flags:
# --with_box_refine --two_stage --num_feature_levels 5 --num_queries 900 --dim_feedforward 2048 --dropout 0.0
# --cls_loss_coef 1.0 --assign_first_stage --assign_second_stage).
# Data: the PE release's DETR-style multi-scale augmentation (flip; resize the short side to 480..S-32 with the long
# side at most S-32, or resize/crop/resize), every image padded to S x S (S = `image_size`). Test: long side S-32,
# padded to S. Optimisation: AdamW, weight decay 1e-4, grad-norm clip 0.1, lr x0.1 on sampling offsets, step decay.
# This base holds the G model at the COCO 1728 stage; stage/size configs set backbone, image size and schedule.
#
# Data: `data_root` comes from the environment variable PE_DENSE_DATA (the folder holding coco/, objects365/), or
# from `--cfg-options data_root=/path/to/coco/`, which tools/train.py and tools/test.py apply to every path below.
custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.engine', 'pe_dense.heads.deta'], allow_failed_imports=False)
default_scope = 'mmdet'

# ----------------------------------------------------------------------------------------------------- model
pe_model = 'PE-Spatial-G14-448'
pe_width = 1536
pe_checkpoint = None   # local PE-Spatial weights at patch 16 (tools/convert_checkpoint.py --patch-size 16)
image_size = 1728      # S: training crops are padded to S x S, test images resized to S - 32 and padded to S
num_classes = 80
num_queries = 900
num_levels = 5
embed_dims = 256
ffn_channels = 2048

model = dict(
    type='DETA',
    num_queries=num_queries,
    num_feature_levels=num_levels,
    with_box_refine=True,
    as_two_stage=True,
    # DETA: per level the top 1000 proposals, NMS 0.9 per level, the best Q/L of each level, padded to Q.
    # None = Deformable DETR's global top-Q.
    query_selection=dict(pre_nms_topk=1000, nms_iou=0.9),
    # Deformable attention samples 8192 queries at a time: the same numbers, but mmcv's PyTorch path (CPU, exports)
    # no longer holds every query's sampled values at once (DETA-G at 1824 px: 4.8 -> 1.3 GB, benchmarks/memory.py).
    # mmcv's CUDA kernel never materialises them; there chunks only add launches. None = mmcv's module as is.
    msda_query_chunk=8192,
    data_preprocessor=dict(
        # = pe_dense.mm.PE_DATA_PREPROCESSOR (PE's own normalisation). The released DETA-G used ImageNet mean/std
        # (its datasets hard-code them); deta_pe_g14_*.py switch to those.
        type='DetDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True,
        # Pads every image to S x S (all are at most S - 32 on the long side), like the release's LSJ collator;
        # the padding is 0 after normalisation and masked in the transformer.
        pad_size_divisor=image_size),
    backbone=dict(
        type='PEBackbone', model_name=pe_model, checkpoint=pe_checkpoint, out_indices=(-1,),
        model_overrides=dict(patch_size=16),  # the released DETA uses patch 16 (kernel resized from 14)
        window_size=24, global_blocks=(12, 24, 36, 49), pos_grid=24, pos_embed_resize='tile',
        # As the released DETA backbone (perception_models DETA_pe/models/pev1.py, run at 3e352cc): RoPE positions
        # arange(n) / n * 16 + 1 (n = 24 in window blocks, the grid side in global blocks; pt_hw_seq_len=16), and
        # windows that attend to their zero padding (1728/16 = 108 and 1824/16 = 114 tokens are not multiples of
        # 24; 'mask' would keep padding out). Block LayerNorm eps is the tower's 1e-5: the release passes eps 1e-6,
        # which its blocks never use.
        rope_mode='window', rope_ref_size=16, window_padding='zeros',
        drop_path_rate=0.4,
        grad_checkpointing=False),  # the recipe checkpoints activations for G: tools/train.py --grad-checkpointing
    neck=dict(type='DETAPyramid', in_channels=pe_width, out_channels=embed_dims, num_outs=num_levels),
    encoder=dict(
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_levels=num_levels, num_heads=8, num_points=4,
                               dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=ffn_channels, ffn_drop=0.0))),
    decoder=dict(
        num_layers=6,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=8, dropout=0.0, batch_first=True),
            cross_attn_cfg=dict(embed_dims=embed_dims, num_levels=num_levels, num_heads=8, num_points=4,
                                dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=ffn_channels, ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True, offset=-0.5),
    bbox_head=dict(
        type='DETAHead',
        num_classes=num_classes,
        embed_dims=embed_dims,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        cls_loss_on_sampled_only=False,  # DETA: every non-positive is background in the focal loss
        match_invalid_anchors=False),  # DETA lets padded/border anchors match; we never make them positive
    train_cfg=dict(
        # Stage 1, proposals: IoU < 0.3 negative, >= 0.7 positive, each GT's best positive; 256 samples per
        # image, half positive at most; at most 4 positives per GT (the highest IoU).
        stage1=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.0,
                          match_low_quality=True, gt_max_assign_all=True),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            max_pos_per_gt=4),
        # Stage 2, queries (assigned once on their initial boxes, reused by every decoder layer): IoU >= 0.6
        # positive, each GT's best positive; Q samples (num=None: the number of queries), a quarter positive at
        # most; at most 4 positives per GT.
        stage2=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.6, neg_iou_thr=0.6, min_pos_iou=0.0,
                          match_low_quality=True, gt_max_assign_all=True),
            sampler=dict(type='RandomSampler', num=None, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            max_pos_per_gt=4)),
    # Sigmoid scores over queries x classes, top 10000, class-wise NMS 0.7, keep 100 (DETA's NMSPostProcess).
    # clip_boxes=False as the release, which leaves boxes that overhang the image as predicted (clipping them
    # changes 22 of 100 final detections on a photo); deta_pe_1024.py (T/S/B/L, no release to match) clips.
    test_cfg=dict(pre_topk=10000, nms=dict(type='nms', iou_threshold=0.7), max_per_img=100, clip_boxes=False))

# --------------------------------------------------------------------------------------------------------- data
dataset_type = 'CocoDataset'
data_root = '{{$PE_DENSE_DATA:data}}/coco/'
backend_args = None
max_size = image_size - 32  # the release caps the long side at S - 32 ("for some weird bugs"), then pads to S
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True, backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SanitizeBoxes', num_classes=num_classes),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=[(s, max_size) for s in range(480, image_size, 32)],
              keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 4200), (500, 4200), (600, 4200)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='Resize', scale=(max_size, max_size), keep_ratio=True)],
    ]),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    # The release's test resize (heads/deta/resize.py): PIL decode, short side to max_size with the long side
    # at most max_size and truncated, PIL bilinear. mmdet's Resize rounds the long side and uses OpenCV.
    dict(type='CheckedLoadImageFromFile', skip_bad=False, imdecode_backend='pillow', backend_args=backend_args),
    dict(type='DETRResize', size=max_size, max_size=max_size),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=1,  # per GPU; the release trains with 1 image per GPU on 64 GPUs at this stage
    num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), filter_cfg=dict(filter_empty_gt=False, min_size=0),
                 pipeline=train_pipeline, backend_args=backend_args))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), test_mode=True, pipeline=test_pipeline,
                 backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val2017.json', metric='bbox',
                     format_only=False, backend_args=backend_args)
test_evaluator = val_evaluator

# Flip + multi-scale TTA (tools/test.py --tta): every view is decoded with soft-NMS, views are merged with PE's
# "quad" soft-NMS; on the smaller views only boxes above 32 px are kept. deta_pe_g14_coco*.py set the scales.
tta_scales = (max_size, 1536, 1152)
tta_model = dict(
    type='DETATTAModel',
    tta_cfg=dict(nms=dict(type='soft_nms', method='quad', iou_threshold=0.7, quad_scale=0.5, score_thr=0.001),
                 max_per_img=None,  # the release keeps every soft-NMS survivor (COCO's AP then counts 100/class)
                 scale_ranges=[(1536, 32, float('inf')), (1152, 32, float('inf'))]))
tta_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=False, backend_args=backend_args),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(s, s), keep_ratio=True) for s in tta_scales],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations', with_bbox=True)],
        [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                               'flip', 'flip_direction'))],
    ]),
]

# -------------------------------------------------------------------------------------------------- optimisation
# DETA/PE release: AdamW, weight decay 1e-4 on every parameter, grad-norm clip 0.1, sampling offsets at 0.1 x lr,
# backbone at `backbone_lr` (same as lr in the PE COCO stages), lr x0.1 at `lr_drop_epoch`. The release passes
# --backbone_lrd 0.9 but its PE backbone ignores it (only its 'vev01' backbone applies layer decay): no decay here.
base_lr = 5e-5
backbone_lr = 5e-5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=backbone_lr / base_lr),
                                    'sampling_offsets': dict(lr_mult=0.1)}))
# The release runs the backbone under bf16 autocast and the rest in fp32; mmengine's AMP casts the whole model and
# mmcv's CUDA deformable attention has no bf16 kernel, so AMP here is fp16 (tools/train.py --amp) or off.

max_epochs = 12
lr_drop_epoch = 10
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[lr_drop_epoch],
                        gamma=0.1)]
auto_scale_lr = dict(enable=False, base_batch_size=64)

# ------------------------------------------------------------------------------------------------------ runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, backend_args=dict(backend='pe_atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
custom_hooks = [dict(type='PreflightHook'), dict(type='RNGStateHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
