# detectron2 LazyConfig: ViTDet-style Mask R-CNN on a PE-Spatial tower (pe_dense.d2.PEViTDetNet), COCO, LSJ at 1024.
# The detectron2 twin of configs/_base_/mask_rcnn_pe.py (mmdet), with PE's own defaults; the G configs switch to
# the released recipe. Model: detectron2's own common/models/mask_rcnn_vitdet.py (RPN 2 convs, 4conv1fc box head
# and 4conv mask head with LN) with its backbone replaced by SimpleFeaturePyramid(net=PEViTDetNet) as Meta wired it
# (perception_models apps/detection, PE_FACTS section 10). Data: LSJ as ViTDet's coco_loader_lsj (flip, scale
# 0.1-2.0 of 1024, crop 1024, square padding in the model).
#
# Schedule arithmetic (iteration-based, as ViTDet; "36 epochs" = ViTDet's 100-epoch schedule x 36/100, integer
# division, as Meta's release did):
#   ViTDet 100 ep = 184,375 iterations at batch 64 (184,375 x 64 / 118,000 images = 100 epochs)
#   36 epochs     -> 184,375 x 36 // 100 = 66,375 iterations
#   lr x0.1 at ViTDet's 163,889 and 177,546 -> x 36 // 100 = 59,000 and 63,916
#   warm-up: 250 iterations, linear from 0.001 x lr (warmup_length is a fraction of max_iter)
# On fewer GPUs keep dataloader.train.total_batch_size = 64 (it is split across GPUs), or scale lr and schedule.
#
# Data: detectron2's builtin "coco_2017_train"/"coco_2017_val" under $DETECTRON2_DATASETS (default ./datasets):
# coco/{train2017,val2017}/ and coco/annotations/instances_{train,val}2017.json.
# Weights: train.init_checkpoint = a detectron2 checkpoint (e.g. mask_rcnn_PEspatial_G_coco36ep.pth), or
# model.backbone.net.checkpoint = a PE tower file (patch converted to 16: tools/convert_checkpoint.py --patch-size 16).
from functools import partial

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling import SimpleFeaturePyramid
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from pe_dense.d2 import PEViTDetNet, get_pe_lr_decay_rate

image_size = 1024

# ------------------------------------------------------------------------------------------------------- model
model = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model
model.pixel_mean = [127.5, 127.5, 127.5]  # PE: RGB with mean = std = 0.5 (x 255)
model.pixel_std = [127.5, 127.5, 127.5]
model.input_format = "RGB"
model.backbone = L(SimpleFeaturePyramid)(
    net=L(PEViTDetNet)(
        model_name="PE-Spatial-B16-512", checkpoint=None, patch_size=16, img_size=image_size,
        window_size=32, global_blocks=(2, 5, 8, 11), drop_path_rate=0.1,
        pos_embed_resize="tile", window_padding="zeros",  # the released detectors' position grid and padding
        grad_checkpointing=False,
    ),
    in_feature="${.net.out_feature}",
    out_channels=256,
    scale_factors=(4.0, 2.0, 1.0, 0.5),
    top_block=L(LastLevelMaxPool)(),
    norm="LN",
    square_pad=image_size,
)
model.backbone.net.out_feature = "last_feat"

# -------------------------------------------------------------------------------------------------------- data
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),
    L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=image_size, target_width=image_size),
    L(T.FixedSizeCrop)(crop_size=(image_size, image_size), pad=False),
]
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.recompute_boxes = True  # boxes from the cropped masks
dataloader.train.total_batch_size = 64
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)]

# ------------------------------------------------------------------------------------------------ optimisation
optimizer = model_zoo.get_config("common/optim.py").AdamW
optimizer.lr = 1e-4
optimizer.params.lr_factor_func = partial(get_pe_lr_decay_rate, lr_decay_rate=0.7, num_layers=12)
# ViTDet's exemptions: no weight decay on norms and the position/class embeddings.
optimizer.params.weight_decay_norm = 0.0
optimizer.params.overrides = {"positional_embedding": {"weight_decay": 0.0}, "class_embedding": {"weight_decay": 0.0}}

train = model_zoo.get_config("common/train.py").train
train.amp.enabled = True
train.ddp.fp16_compression = True
train.init_checkpoint = ""
train.max_iter = 184_375 * 36 // 100  # 66,375
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01],
        milestones=[163_889 * 36 // 100, 177_546 * 36 // 100],  # 59,000 and 63,916
        num_updates=train.max_iter,
    ),
    warmup_length=250 / train.max_iter,
    warmup_factor=0.001,
)
