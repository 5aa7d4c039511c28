# DETA on PE-Spatial-B16-512 fine-tuned on your COCO-format dataset, one GPU (defaults, lr rule and schedule
# arithmetic: _base_/deta_custom.py). Backbone as deta_pe_b16_coco.py: native patch 16 (weights load as they are),
# windows of 32 tokens at 1024 px, global blocks 2/5/8/11, drop path 0.2, last block as the pyramid's input (see
# deta_pe_t16_custom.py for the layer and resolution choice). Batch 2 at 1024 px fits 24 GB with --amp.
#   --cfg-options data_root=/data/mine/ model.backbone.checkpoint=/weights/PE-Spatial-B16-512.pt
_base_ = './_base_/deta_custom.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-B16-512', window_size=32,
                  global_blocks=(2, 5, 8, 11), pos_grid=32, drop_path_rate=0.2),
    neck=dict(in_channels=768))
