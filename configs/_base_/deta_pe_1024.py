# DETA on PE at 1024 px (training crops padded to 1024, test long side 992): the shared base of the T/S/B/L
# configs, which fine-tune on COCO straight from PE-Spatial weights. Only G has a released recipe; these sizes
# are our choice (see deta_pe_t16_coco.py for the schedule).
_base_ = './deta_pe.py'

image_size = 1024
max_size = image_size - 32

model = dict(
    data_preprocessor=dict(pad_size_divisor=image_size),
    # No released checkpoint to match at these sizes: keep the pretrained towers' own settings (RoPE spacing of the
    # 32-token pretraining grid) and keep window padding out of attention; boxes are clipped to the image.
    backbone=dict(rope_ref_size=32, window_padding='mask'),
    test_cfg=dict(clip_boxes=True))

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
    dict(type='CheckedLoadImageFromFile', skip_bad=False),
    dict(type='Resize', scale=(max_size, max_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

tta_scales = (max_size, 896, 768)
tta_model = dict(tta_cfg=dict(scale_ranges=[(896, 32, float('inf')), (768, 32, float('inf'))]))
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

# DETA's public 12-epoch schedule for a detector started from backbone weights: lr 2e-4, backbone 2e-5,
# batch 16 (8 GPUs x 2), lr x0.1 after epoch 10. COCO: 118,287 / 16 = 7,393 iterations per epoch, 88,716 in all.
base_lr = 2e-4
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[10], gamma=0.1)]
auto_scale_lr = dict(base_batch_size=16)
