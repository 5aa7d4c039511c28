# The CPU demo Mask R-CNN shrunk for the distributed smoke test: 1 PE block, 128 px, 2 iterations, no validation.
_base_ = '../../configs/demo/mask_rcnn_pe_t16_demo.py'

image_size = 128
model = dict(data_preprocessor=dict(pad_size_divisor=image_size), backbone=dict(model_overrides=dict(layers=1)))
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SanitizeBoxes', num_classes=12),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
max_iters = 2
train_cfg = dict(max_iters=max_iters, val_interval=1000)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters))
log_level = 'WARNING'
