# DETA, PE-Spatial G, COCO at 1824 px, 3 more epochs: stage 4 of the PE recipe, the released deta_coco_1824pix.pth
# (65.2 box AP). Release script finetune_further_spatial_Gwin384_cocoep3_1824pix_8node.sh.
#
# Schedule arithmetic:
#   118,287 images; batch 64 (8 nodes x 8 GPUs x 1 image) -> 1,848 iterations per epoch; 3 epochs -> 5,545
#   iterations; lr x0.1 after epoch 2. SGD (momentum 0.9, wd 1e-4), lr 5e-5 everywhere, drop path 0, class
#   heads kept from stage 3 (--keep_class_embed), bf16 backbone.
# Start from stage 3: --cfg-options load_from=work_dirs/deta_pe_g14_coco/epoch_12.pth.
# Evaluate the released weights: tools/convert_checkpoint.py turns deta_coco_1824pix.pth into this model's keys
# (pe_dense.convert.deta.convert_deta_checkpoint), then tools/test.py configs/deta_pe_g14_coco_1824.py CKPT.
_base_ = './deta_pe_g14_coco.py'

image_size = 1824
max_size = image_size - 32

model = dict(data_preprocessor=dict(pad_size_divisor=image_size), backbone=dict(drop_path_rate=0.0))

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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# TTA at this stage (the release's 66.0 AP): views at 1792 (test size), 1728, 1536 and 1344, each with its flip;
# boxes under 64 px dropped on the 1536/1344 views. deta_pe_g14_coco_1824_tta.py sets the per-view decoding.
tta_scales = (max_size, 1728, 1536, 1344)
tta_model = dict(tta_cfg=dict(scale_ranges=[(1536, 64, float('inf')), (1344, 64, float('inf'))]))
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

optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=5e-5, momentum=0.9, weight_decay=1e-4))
max_epochs = 3
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[2], gamma=0.1)]
