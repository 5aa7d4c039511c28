# detectron2 LazyConfig: Mask R-CNN, PE-Spatial G (patch 16), COCO, 36 epochs: the released recipe (57.8 box AP /
# 50.3 mask AP) as Meta's perception_models (apps/detection/projects/ViTDet/configs/COCO/
# mask_rcnn_PEspatial_G_coco36ep.py) sets it. The released mask_rcnn_PEspatial_G_coco36ep.pth loads into this model
# with DetectionCheckpointer, strictly:
#   python tools/d2_train.py --config-file configs/d2/mask_rcnn_pe_g14_coco.py --eval-only \
#       train.init_checkpoint=/weights/mask_rcnn_PEspatial_G_coco36ep.pth
#
# Schedule (the base's arithmetic): 184,375 x 36 // 100 = 66,375 iterations at batch 64; lr steps 59,000 / 63,916;
# 250 warm-up iterations.
# Where the release differs from PE's defaults (the base), each set here:
# - pixels mean = std = 127 (RGB), not 127.5;
# - weight decay 0.1 on every parameter (weight_decay_norm=None, overrides={}), no ViTDet exemptions;
# - drop path 0.5, layer-wise lr decay 0.9 over 50 blocks, lr 5e-5, activation checkpointing;
# - global blocks 12, 24, 36, 49, window 32; position grid 32x32 tiled; RoPE reference grid 32 (pt_hw_seq_len).
# Meta's config passes norm_layer=LayerNorm(eps=1e-6), which its blocks never use: eps stays 1e-5 here too.
from functools import partial

from pe_dense.d2 import get_pe_lr_decay_rate

from ._base_.mask_rcnn_pe import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.pixel_mean = [127.0, 127.0, 127.0]
model.pixel_std = [127.0, 127.0, 127.0]
net = model.backbone.net
net.model_name = "PE-Spatial-G14-448"
net.global_blocks = (12, 24, 36, 49)
net.drop_path_rate = 0.5
net.grad_checkpointing = True  # the release's use_act_checkpoint=True

optimizer.lr = 5e-5
optimizer.params.lr_factor_func = partial(get_pe_lr_decay_rate, lr_decay_rate=0.9, num_layers=50)
optimizer.params.weight_decay_norm = None
optimizer.params.overrides = {}
