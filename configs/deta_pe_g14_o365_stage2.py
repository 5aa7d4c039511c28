# DETA, PE-Spatial G, Objects365 v2 at 1536 px, 6 more epochs: stage 2 of the PE recipe (release script
# pretrain_continue_spatial_Gwin384_o365ep6_1536pix_16node.sh).
#
# Schedule arithmetic:
#   1,742,289 images; batch 128 (16 nodes x 8 GPUs x 1 image) -> 13,612 iterations per epoch; 6 epochs ->
#   81,670 iterations; lr x0.1 after epoch 4; lr 5e-5 for heads and backbone, drop path 0.5, fp32
# Start from stage 1: --cfg-options load_from=work_dirs/deta_pe_g14_o365_stage1/epoch_12.pth.
# The release re-initialises the class heads at every --finetune (it deletes class_embed unless
# --keep_class_embed); mmengine's load_from keeps them when shapes match. To reproduce that exactly, drop the
# 'bbox_head.cls_branches.*' keys from the stage-1 checkpoint first.
_base_ = './deta_pe_g14_o365_stage1.py'

image_size = 1536
max_size = image_size - 32
num_classes = 365

model = dict(data_preprocessor=dict(pad_size_divisor=image_size))

train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True),
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
    dict(type='CheckedLoadImageFromFile', skip_bad=False, imdecode_backend='pillow'),
    dict(type='DETRResize', size=max_size, max_size=max_size),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

base_lr = 5e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr))
max_epochs = 6
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[4], gamma=0.1)]
auto_scale_lr = dict(base_batch_size=128)
