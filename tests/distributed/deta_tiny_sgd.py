# The CPU demo DETA shrunk for the distributed tests: 1 PE block, 128 px, deterministic data and plain SGD.
# Why each change (tests/distributed/test_data_parallel.py compares 2 ranks x batch 1 with 1 rank x batch 2):
# - no random resize/flip: each process draws augmentation from its own generator, so 2 ranks and 1 process would
#   see different pixels (DDP promises equal gradients for equal inputs, not equal random streams);
# - pad_size_divisor = image_size: every image is padded to 128x128 alone or in a batch of 2 (DETA's backbone sees
#   padded pixels, so batch-dependent padding would change the features);
# - SGD instead of AdamW: Adam divides by sqrt(v), which turns rounding-level gradient differences of
#   near-zero gradients into lr-sized steps (measured 1.4e-3 after 3 steps); SGD keeps them at rounding level;
# - no validation, constant lr, checkpoint every 2 iterations, quiet logs.
_base_ = '../../configs/demo/deta_pe_t16_demo.py'

image_size = 128
model = dict(data_preprocessor=dict(pad_size_divisor=image_size),
             backbone=dict(model_overrides=dict(layers=1)))
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SanitizeBoxes', num_classes=12),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
max_iters = 4
train_cfg = dict(max_iters=max_iters, val_interval=1000)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=-1))
log_level = 'WARNING'
