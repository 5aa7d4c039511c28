# DETA on PE-Spatial-S16-512 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule and schedule
# arithmetic: _base_/deta_custom.py). Backbone as deta_pe_s16_coco.py: native patch 16 (weights load as they are),
# windows of 32 tokens at 1024 px, global blocks 2/5/8/11, last block as the pyramid's input (see
# deta_pe_t16_custom.py for the layer and resolution choice).
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-S16-512.pt
_base_ = './_base_/deta_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-S16-512', window_size=32,
                  global_blocks=(2, 5, 8, 11), pos_grid=32, drop_path_rate=0.1),
    neck=dict(in_channels=384))
