# DETA on PE-Spatial-T16-512 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule and schedule
# arithmetic: _base_/deta_custom.py). Backbone as deta_pe_t16_coco.py: native patch 16, so the released weights
# load as they are; 1024 px input = 64 x 64 tokens in windows of 32 (the pretraining grid), global blocks 2/5/8/11.
# Layer: the last block (`out_indices=(-1,)`), the layer PE-Spatial is trained to make spatial; the pyramid is
# built from it. Resolution: 1024 keeps objects of 32 px at 2 x 2 tokens; for small objects raise it (image sizes
# that are multiples of 32 x 16 = 512 keep whole windows), for speed lower it to 768.
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-T16-512.pt
_base_ = './_base_/deta_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-T16-512', window_size=32,
                  global_blocks=(2, 5, 8, 11), pos_grid=32, drop_path_rate=0.1),
    neck=dict(in_channels=192))
