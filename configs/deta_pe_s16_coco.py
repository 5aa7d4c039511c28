# DETA, PE-Spatial-S16-512, COCO at 1024 px from PE-Spatial weights (no Objects365 stage). Not a released recipe:
# windows of 32 tokens (the model's native 32x32 grid, so the stored position grid tiles windows unchanged),
# ViTDet-style global blocks (2, 5, 8, 11), drop path 0.1.
# Schedule: as deta_pe_t16_coco.py.
# Weights: --cfg-options model.backbone.checkpoint=/path/to/PE-Spatial-S16-512.pt
_base_ = './_base_/deta_pe_1024.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-S16-512', window_size=32,
                  global_blocks=(2, 5, 8, 11), pos_grid=32, drop_path_rate=0.1),
    neck=dict(in_channels=384))
