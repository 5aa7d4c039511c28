# DETA, PE-Spatial G, Objects365 v2 pre-training at 1024 px, 12 epochs: stage 1 of the PE recipe (see
# deta_pe_g14_coco.py for all four stages; release script pretrain_spatial_Gwin384_o365ep12_1024pix_16node.sh).
#
# Schedule arithmetic:
#   Objects365 v2 train = 1,742,289 images; batch 256 (16 nodes x 8 GPUs x 2 images, the release's default
#   --batch_size 2) -> 6,806 iterations per epoch; 12 epochs -> 81,670 iterations; lr x0.1 after epoch 10
#   lr 2e-4 for heads and backbone (--lr default, --lr_backbone 2e-4), AdamW wd 1e-4, clip 0.1, drop path 0.5
#   (the release's default for G), fp32
# Weights: PE-Spatial-G14-448 converted to patch 16 and a 24x24 position grid (the release's
# pe_spatial_G14_448_16patch384pix.pth): tools/convert_checkpoint.py --patch-size 16 --pos-grid 24, then
# --cfg-options model.backbone.checkpoint=/path/to/it.
# Data: $PE_DENSE_DATA/objects365/ in mmdet's Objects365 v2 layout (annotations/zhiyuan_objv2_{train,val}.json,
# train/, val/), or --cfg-options data_root=/path/.
_base_ = './_base_/deta_pe.py'

image_size = 1024
max_size = image_size - 32
num_classes = 365
dataset_type = 'Objects365V2Dataset'
data_root = '{{$PE_DENSE_DATA:data}}/objects365/'

model = dict(
    # ImageNet mean/std as in the release's datasets (see deta_pe_g14_coco.py)
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], pad_size_divisor=image_size),
    backbone=dict(drop_path_rate=0.5, grad_checkpointing=True),
    bbox_head=dict(num_classes=num_classes))

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
train_dataloader = dict(
    batch_size=2,
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/zhiyuan_objv2_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/zhiyuan_objv2_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/zhiyuan_objv2_val.json')
test_evaluator = val_evaluator

base_lr = 2e-4
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)  # --eval_per_epochs 2
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[10], gamma=0.1)]
auto_scale_lr = dict(base_batch_size=256)
