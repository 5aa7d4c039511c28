# Fine-tune DETA on a PE-Spatial backbone on YOUR COCO-format dataset, on one GPU. Size configs
# (deta_pe_<size>_custom.py) set the backbone; everything below is shared. Model, augmentation and test settings are
# those of the COCO configs at 1024 px (../../_base_/deta_pe_1024.py).
#
#   python tools/train.py configs/finetune/deta_pe_b16_custom.py --cfg-options data_root=/data/mine/ \
#       train_ann=annotations/train.json train_img=train/ val_ann=annotations/val.json val_img=val/ \
#       model.backbone.checkpoint=/weights/PE-Spatial-B16-512.pt
#
# Classes: every category of `train_ann` (or the subset `classes`), in the file's order; `num_classes` of the head
# is set from it when the runner is built (pe_dense/engine/custom_coco.py: CustomCocoRunner), so no class tuple
# is edited by hand. Category ids need not be contiguous (mmdet remaps them to labels; result files keep the ids).
# Named errors: config classes absent from the file, duplicated or unlisted category ids, images missing on disk,
# a backbone checkpoint of another model size, and a `load_from` detector whose class layers were made for
# another class count (set reinit_class_layers=True to fine-tune it on your classes anyway).
#
# One-GPU defaults and their arithmetic:
# - batch 2 images per GPU at 1024 px (T/S/B fit 24 GB; L and G: see their configs).
# - lr: DETA's 2e-4 at batch 16 scaled by the square-root rule for AdamW: 2e-4 x sqrt(2 / 16) = 7.1e-5 -> 7e-5;
#   backbone x0.1 (fine-tuned) as the COCO configs. More GPUs: --auto-scale-lr scales linearly from batch 2
#   (mmdet's rule), fine up to a few GPUs; for a large batch re-derive from 2e-4 at 16.
# - schedule: 12 epochs, lr x0.1 after epoch 10 (DETA's public schedule). Iterations = ceil(images / 2) x 12:
#   e.g. 5,000 images -> 2,500 per epoch, 30,000 in all; for fewer than ~2,000 images prefer 24-36 epochs:
#   --cfg-options train_cfg.max_epochs=24 param_scheduler.0.end=24 "param_scheduler.0.milestones=[20]".
# - frozen_backbone=True: no gradients through PE (faster, less memory, for very small datasets); the default
#   fine-tunes it.
_base_ = '../../_base_/deta_pe_1024.py'

custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.engine', 'pe_dense.engine.custom_coco',
                               'pe_dense.heads.deta'], allow_failed_imports=False)
runner_type = 'CustomCocoRunner'

# ------------------------------------------------------------------------------------- your data (command line)
data_root = 'data/custom/'
train_ann = 'annotations/train.json'   # relative to data_root, or absolute
train_img = 'train/'                   # folder the annotation's file_name entries are relative to
val_ann = 'annotations/val.json'       # val_ann=annotations/train.json val_img=train/ to evaluate on the train set
val_img = 'val/'
classes = None                         # None: all categories of train_ann; or "classes=('cat','dog')" (a subset)
num_classes_at = ['model.bbox_head.num_classes']
frozen_backbone = False
reinit_class_layers = False            # True: load_from a detector of other classes, re-initialising class layers
check_images = True                    # list the images missing on disk before training

# Weights: --cfg-options model.backbone.checkpoint=PE-Spatial-<size>.pt (L and G at patch 16: convert first,
# tools/convert_checkpoint.py PE-Spatial-L14-448.pt pe_l16.pt --patch-size 16).
model = dict(backbone=dict(checkpoint=None))

train_dataloader = dict(batch_size=2, num_workers=4,
                        dataset=dict(data_root=data_root, ann_file=train_ann, data_prefix=dict(img=train_img),
                                     filter_cfg=dict(filter_empty_gt=True, min_size=0)))
val_dataloader = dict(dataset=dict(data_root=data_root, ann_file=val_ann, data_prefix=dict(img=val_img)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator

base_lr = 7e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
max_epochs = 12
lr_drop_epoch = 10
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[lr_drop_epoch],
                        gamma=0.1)]
auto_scale_lr = dict(base_batch_size=2)
custom_hooks = [dict(type='PreflightHook'), dict(type='RNGStateHook'), dict(type='ClassLayersCheckHook')]
default_hooks = dict(checkpoint=dict(save_best='coco/bbox_mAP', rule='greater'))
