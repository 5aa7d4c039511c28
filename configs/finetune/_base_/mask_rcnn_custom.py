# Fine-tune a ViTDet-style Mask R-CNN on a PE-Spatial backbone on YOUR COCO-format dataset (boxes + instance masks),
# on one GPU. Size configs (mask_rcnn_pe_<size>_custom.py) set the backbone, drop path and layer decay as the COCO
# configs; model, LSJ augmentation at 1024 px and test settings are those of ../../_base_/mask_rcnn_pe.py.
#
#   python tools/train.py configs/finetune/mask_rcnn_pe_b16_custom.py --cfg-options data_root=/data/mine/ \
#       train_ann=annotations/train.json train_img=train/ val_ann=annotations/val.json val_img=val/ \
#       model.backbone.checkpoint=/weights/PE-Spatial-B16-512.pt
#
# Classes: every category of `train_ann` (or the subset `classes`), in the file's order; `num_classes` of the box and
# mask heads is set from it when the runner is built (pe_dense/engine/custom_coco.py: CustomCocoRunner), so no class
# tuple is edited by hand. Category ids need not be contiguous (mmdet remaps them; result files keep the ids).
# Named errors: config classes absent from the file, duplicated or unlisted category ids, images missing on disk,
# a backbone checkpoint of another model size, and a `load_from` detector whose class layers were made for another
# class count (reinit_class_layers=True fine-tunes it on your classes anyway, e.g. from a COCO Mask R-CNN).
#
# One-GPU defaults and their arithmetic:
# - batch 2 images per GPU at 1024 px, AMP advised on GPU (tools/train.py --amp); T/S/B fit 24 GB, L and G need
#   --grad-checkpointing (and G 80 GB).
# - lr: the COCO configs' 1e-4 at batch 64 (ViTDet) scaled by the square-root rule for AdamW:
#   1e-4 x sqrt(2 / 64) = 1.8e-5 (G: 5e-5 x sqrt(2 / 64) = 8.8e-6); layer-wise decay as the COCO size configs.
#   More GPUs: --auto-scale-lr scales linearly from batch 2 (mmdet's rule), fine up to a few GPUs.
# - schedule: ViTDet's "36 epochs" in epochs, lr x0.1 at the same fractions as the iteration schedule
#   (59,000 / 66,375 and 63,916 / 66,375 = 0.889 and 0.963 -> epochs 32 and 35), warm-up 250 iterations.
#   Iterations = ceil(images / 2) x 36: e.g. 5,000 images -> 2,500 per epoch, 90,000 in all. Shorter:
#   --cfg-options train_cfg.max_epochs=12 param_scheduler.1.end=12 "param_scheduler.1.milestones=[11]".
# - frozen_backbone=True: no gradients through PE (a frozen-feature detector); the default fine-tunes it.
_base_ = '../../_base_/mask_rcnn_pe.py'

custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.engine', 'pe_dense.engine.custom_coco',
                               'pe_dense.heads.mask_rcnn'], allow_failed_imports=False)
runner_type = 'CustomCocoRunner'

# ------------------------------------------------------------------------------------- your data (command line)
data_root = 'data/custom/'
train_ann = 'annotations/train.json'   # relative to data_root, or absolute
train_img = 'train/'                   # folder the annotation's file_name entries are relative to
val_ann = 'annotations/val.json'       # val_ann=annotations/train.json val_img=train/ to evaluate on the train set
val_img = 'val/'
classes = None                         # None: all categories of train_ann; or "classes=('cat','dog')" (a subset)
num_classes_at = ['model.roi_head.bbox_head.num_classes', 'model.roi_head.mask_head.num_classes']
frozen_backbone = False
reinit_class_layers = False            # True: load_from a detector of other classes, re-initialising class layers
check_images = True                    # list the images missing on disk before training

# Weights: --cfg-options model.backbone.checkpoint=PE-Spatial-<size>.pt (L and G at patch 16: convert first,
# tools/convert_checkpoint.py PE-Spatial-L14-448.pt pe_l16.pt --patch-size 16).
model = dict(backbone=dict(checkpoint=None))

train_dataloader = dict(batch_size=2,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=dict(data_root=data_root, ann_file=train_ann, data_prefix=dict(img=train_img)))
val_dataloader = dict(dataset=dict(data_root=data_root, ann_file=val_ann, data_prefix=dict(img=val_img)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator

base_lr = 1.8e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr))
max_epochs = 36
lr_steps = [32, 35]
warmup_iters = 250
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs // 6)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=lr_steps, gamma=0.1),
]
auto_scale_lr = dict(base_batch_size=2)
custom_hooks = [dict(type='PreflightHook'), dict(type='IterationSeedHook'), dict(type='ClassLayersCheckHook')]
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=max_epochs // 6, max_keep_ckpts=2,
                                     save_best='coco/segm_mAP', rule='greater'))
log_processor = dict(by_epoch=True)
