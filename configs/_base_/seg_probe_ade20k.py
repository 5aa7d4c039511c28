# ADE20k linear probe on a frozen PE-Spatial backbone: DINOv2's "linear" protocol (PE_FACTS sections 6 and 8), on
# mmseg 1.2.2's EncoderDecoder, ADE20KDataset, IoUMetric and transforms, with our LinearProbeHead (heads/seg/).
#
# Protocol: frozen features of the last block ("linear"; the *_ms.py configs: last 4 blocks, "linear4"), BatchNorm
# + 1x1 conv, logits upsampled bilinearly to the label size in the loss; 512 crops from RandomResize (2048, 512)
# x 0.5-2.0, cat_max_ratio 0.75, flip, PhotoMetricDistortion; AdamW lr 1e-3, wd 1e-4, batch 16; linear warm-up over
# 1500 iterations, then poly (power 1) to 0 at 40k iterations; slide inference (512 windows, stride 341).
# Size configs (seg_probe_pe_<size>_ade20k.py) set the backbone and the head's width and patch.
#
# Schedule arithmetic:
#   batch 16 = 8 GPUs x 2 images (DINOv2); on N GPUs x B images keep N x B = 16 or pass --auto-scale-lr
#   40,000 iterations x 16 images = 640,000 crops = 31.6 epochs of ADE20k train (20,210 images)
#   lr(i) = 1e-3 x warm(i) x (1 - i / 40,000), warm(i) = 1e-6 + (1 - 1e-6) x i / 1,500 for i < 1,500, else 1
#     (mmengine multiplies the two schedulers while both run: exactly mmcv 1.x's poly with linear warm-up,
#      warmup_ratio 1e-6, that DINOv2's configs use)
#   validation and checkpoints every 4,000 iterations (10 per run); best checkpoint by mIoU
#
# Deviations from DINOv2, each a named option here:
# - PE-Spatial has no final norm (no ln_post): the probe reads the last block's tokens as they are;
# - `probe_type`: 'bn_linear' (DINOv2, the default) or 'linear_conv' (our reading of PE's "linear + conv" wording,
#   see heads/seg/probe_head.py);
# - `probe_cls_token`: concatenate the cls token (DINOv2's linear probe did; False by default here because
#   PE-Spatial G has none and one setting should serve every size). With True the backbone must return it:
#   set model.backbone.output_cls_token=True too (G refuses both);
# - patch-14 models (L, G) at 512 px: 512 is not a multiple of 14. The backbone zero-pads each input right and
#   bottom to 518 (37 tokens, `pad_to_patch`), and the head upsamples the logits to 518 and crops 512
#   (`patch_size` of the head) so that logits stay pixel-aligned. DINOv2 padded centrally and stretched the
#   logits instead;
# - BatchNorm is plain BN; on several GPUs set sync_bn='torch' (mmengine converts it to SyncBN, as DINOv2's).
#
# Data: `data_root` comes from PE_DENSE_DATA (the folder holding ade/ADEChallengeData2016/) or from
# `--cfg-options data_root=/path/to/ADEChallengeData2016/`. Weights: `model.backbone.checkpoint` = a local file.
custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.engine', 'pe_dense.heads.seg', 'pe_dense.features'],
                      allow_failed_imports=False)
_base_ = ['./feature_cache.py']  # runner_type, feature_cache (dir=None: train from images), mmseg scope

# ------------------------------------------------------------------------------------------------------- model
pe_model = 'PE-Spatial-B16-512'
pe_width = 768
pe_patch = 16
pe_checkpoint = None            # local PE-Spatial weights, e.g. '/weights/PE-Spatial-B16-512.pt'
probe_layers = (-1,)            # blocks read ("linear"); the _ms configs: (-4, -3, -2, -1)
probe_type = 'bn_linear'
probe_cls_token = False
num_classes = 150
crop_size = (512, 512)

data_preprocessor = dict(
    # = pe_dense.mm.PE_DATA_PREPROCESSOR: PE normalises RGB with mean = std = 0.5 (x 255). Training crops smaller
    # than crop_size are padded to it (image 0 after normalisation, labels 255 = ignored).
    type='SegDataPreProcessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True,
    pad_val=0, seg_pad_val=255, size=crop_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='PEBackbone', model_name=pe_model, checkpoint=pe_checkpoint, out_indices=probe_layers,
                  frozen=True, output_cls_token=probe_cls_token, pad_to_patch=True),
    decode_head=dict(
        type='LinearProbeHead', in_channels=pe_width, in_index=tuple(range(len(probe_layers))),
        use_cls_token=probe_cls_token, probe=probe_type, patch_size=pe_patch, num_classes=num_classes,
        norm_cfg=dict(type='BN'), dropout_ratio=0.0, align_corners=False, ignore_index=255,
        # avg_non_ignore=False (mmseg's default, the one DINOv2's runs used): the mean is over all pixels, ignored
        # ones included; True would average over labelled pixels only (PyTorch's cross_entropy).
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0, avg_non_ignore=False)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# -------------------------------------------------------------------------------------------------------- data
dataset_type = 'ADE20KDataset'
data_root = '{{$PE_DENSE_DATA:data}}/ade/ADEChallengeData2016/'
# pe_dense.engine's image loader (named errors; unreadable training images are skipped with a warning) is
# registered in mmdet's TRANSFORMS: the 'mmdet.' prefix finds it from this mmseg-scoped config.
train_pipeline = [
    dict(type='mmdet.CheckedLoadImageFromFile', skip_bad=True),
    dict(type='CheckedLoadSegAnnotations', num_classes=num_classes),  # reduce_zero_label from the dataset
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='mmdet.CheckedLoadImageFromFile', skip_bad=False),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='CheckedLoadSegAnnotations', num_classes=num_classes),  # after Resize: scored at the original size
    dict(type='PackSegInputs'),
]
# Multi-scale + flip test ("+ms", tools/test.py --tta): short side 512 x (1, 1.32, 1.73, 2.28, 3), each also
# flipped; mmseg's SegTTAModel averages the softmax of the 10 predictions.
tta_scales = (1.0, 1.32, 1.73, 2.28, 3.0)
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='mmdet.CheckedLoadImageFromFile', skip_bad=False),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(round(2048 * r), round(512 * r)), keep_ratio=True) for r in tta_scales],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='CheckedLoadSegAnnotations', num_classes=num_classes)],
        [dict(type='PackSegInputs')]]),
]
train_dataloader = dict(
    batch_size=2,  # per GPU: 8 GPUs x 2 = 16 (see the schedule arithmetic)
    num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])  # ignore_index 255, as the labels above
test_evaluator = val_evaluator

# ------------------------------------------------------------------------------------------------ optimisation
# Only the head learns: the frozen backbone's parameters have requires_grad=False, get no gradient and are
# never updated (AdamW skips parameters without a gradient, weight decay included).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=None)
max_iters = 40_000
warmup_iters = 1_500
val_interval = 4_000
# mmengine's schedulers reach their final factor at step end - 1, mmcv 1.x's at step end: hence the + 1s.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters + 1),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters + 1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)

# ----------------------------------------------------------------------------------------------------- runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Atomic writes (temp file + os.replace), see pe_dense.engine.checkpoint_io.
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=val_interval, max_keep_ckpts=2,
                    save_best='mIoU', rule='greater', backend_args=dict(backend='pe_atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir DIR sets draw=True, test_out_dir=DIR: ground truth | prediction overlays per image.
    visualization=dict(type='SegOverlayHook'))
custom_hooks = [dict(type='PreflightHook'), dict(type='IterationSeedHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer', alpha=0.5)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
