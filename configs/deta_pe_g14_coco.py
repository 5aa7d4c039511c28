# DETA, PE-Spatial G (patch 16, window 24, global blocks 12/24/36/49), COCO fine-tuning at 1728 px: the third of
# the four stages of the PE recipe (PE_FACTS section 4; perception_models apps/detection/DETA_pe/scripts):
#   1. Objects365 @1024, 12 ep   configs/deta_pe_g14_o365_stage1.py
#   2. Objects365 @1536,  6 ep   configs/deta_pe_g14_o365_stage2.py (from stage 1)
#   3. COCO       @1728, 12 ep   this file (from stage 2)
#   4. COCO       @1824,  3 ep   configs/deta_pe_g14_coco_1824.py (from stage 3; the released deta_coco_1824pix.pth)
# Published: 65.2 box AP on COCO val after stage 4, 66.0 with TTA.
#
# Schedule arithmetic (epoch-based, as the release):
#   COCO train2017 = 118,287 images; batch 64 (8 nodes x 8 GPUs x 1 image) -> 1,848 iterations per epoch
#   12 epochs -> 22,179 iterations; lr x0.1 after epoch 10 (iteration 18,483)
#   lr 5e-5 everywhere (backbone included), AdamW wd 1e-4, clip 0.1, drop path 0.4, bf16 backbone
# On N GPUs x B images keep N x B = 64, or pass --auto-scale-lr (linear scaling from batch 64).
#
# Start from stage 2: --cfg-options load_from=work_dirs/deta_pe_g14_o365_stage2/epoch_6.pth. The Objects365 heads
# (365 classes) do not fit COCO's 80 and are skipped by mmengine's non-strict load, which re-initialises them as the
# release does (it deletes class_embed when fine-tuning).
_base_ = './_base_/deta_pe.py'

image_size = 1728
max_size = image_size - 32

model = dict(
    # The released DETA normalises with ImageNet's mean/std (hard-coded in its datasets), not PE's 0.5/0.5.
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], pad_size_divisor=image_size),
    backbone=dict(model_name='PE-Spatial-G14-448', model_overrides=dict(patch_size=16), window_size=24,
                  global_blocks=(12, 24, 36, 49), pos_grid=24, pos_embed_resize='tile', drop_path_rate=0.4,
                  grad_checkpointing=True),  # the release checkpoints every block (act_checkpoint_ratio 1.0)
    neck=dict(in_channels=1536))

train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SanitizeBoxes', num_classes=80),
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
    dict(type='CheckedLoadImageFromFile', skip_bad=False, imdecode_backend='pillow'),
    dict(type='DETRResize', size=max_size, max_size=max_size),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# TTA of the release at this stage: views at 1696 (the test size), 1536 and 1152, each with its flip; boxes under
# 32 px dropped on the 1536/1152 views; 2000 queries; per view top 2000 pairs + quad soft-NMS (quad_scale 0.5).
tta_scales = (max_size, 1536, 1152)
tta_model = dict(tta_cfg=dict(scale_ranges=[(1536, 32, float('inf')), (1152, 32, float('inf'))]))
tta_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=False),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(s, s), keep_ratio=True) for s in tta_scales],
        [dict(type='RandomFlip', prob=0.0), dict(type='RandomFlip', prob=1.0)],
        [dict(type='LoadAnnotations', with_bbox=True)],
        [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                               'flip', 'flip_direction'))],
    ]),
]
# For TTA runs pass: --cfg-options model.num_queries=2000 model.test_cfg.pre_topk=2000
#   model.test_cfg.max_per_img=None "model.test_cfg.nms={'type':'soft_nms','method':'quad','quad_scale':0.5}"
# (the release evaluates TTA with 2000 queries and soft-NMS inside every view).

base_lr = 5e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[10], gamma=0.1)]
auto_scale_lr = dict(base_batch_size=64)
