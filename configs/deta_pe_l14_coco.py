# DETA, PE-Spatial-L14-448, COCO at 1024 px from PE-Spatial weights (no Objects365 stage). Not a released recipe:
# windows of 32 tokens (the model's native 32x32 grid, so the stored position grid tiles windows unchanged),
# ViTDet-style global blocks (5, 11, 17, 23), drop path 0.4.
# Schedule: as deta_pe_t16_coco.py.
# Weights: --cfg-options model.backbone.checkpoint=/path/to/PE-Spatial-L14-448.pt (converted to patch 16:
# tools/convert_checkpoint.py --patch-size 16)
_base_ = './_base_/deta_pe_1024.py'

model = dict(
    backbone=dict(model_name='PE-Spatial-L14-448', model_overrides=dict(patch_size=16), window_size=32,
                  global_blocks=(5, 11, 17, 23), pos_grid=32, drop_path_rate=0.4),
    neck=dict(in_channels=1024))
