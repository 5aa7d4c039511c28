# detectron2 LazyConfig: Mask R-CNN, PE-Spatial-B16-512 backbone, COCO, 36 epochs (schedule arithmetic in
# _base_/mask_rcnn_pe.py: 66,375 iterations at batch 64, lr steps 59,000 / 63,916), the twin of
# configs/mask_rcnn_pe_b16_coco.py (mmdet).
#
# Only G has a published PE detection recipe. For this size we take ViTDet's per-size choices (ViTDet-B: 4 global
# blocks evenly spaced, drop path 0.1, layer decay 0.7, lr 1e-4; ViTDet-L: drop path 0.4, layer decay 0.8), PE's own
# pixel normalisation (mean = std = 127.5) and ViTDet's weight-decay exemptions (the base's): no release to match.
from functools import partial

from pe_dense.d2 import get_pe_lr_decay_rate

from ._base_.mask_rcnn_pe import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

net = model.backbone.net
net.model_name = "PE-Spatial-B16-512"
net.global_blocks = (2, 5, 8, 11)
net.drop_path_rate = 0.1
optimizer.lr = 1e-4
optimizer.params.lr_factor_func = partial(get_pe_lr_decay_rate, lr_decay_rate=0.7, num_layers=12)
