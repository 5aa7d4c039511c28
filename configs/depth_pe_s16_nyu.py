# NYUv2 depth, frozen PE-Spatial-S16-512, DPT head on the last block (the paper's one-layer setting;
# protocol and schedule arithmetic in _base_/depth_nyu.py: 20 epochs of 1,515 iterations at batch 16,
# best validation RMSE).
# Four layers instead (DINOv2's DPT): backbone out_indices=(2, 5, 8, 11)
# (1-based {3, 6, 9, 12}), the head takes all four.
_base_ = './_base_/depth_nyu.py'

model = dict(
    data_preprocessor=dict(size_divisor=16, test_cfg=dict(size_divisor=16)),
    backbone=dict(model_name='PE-Spatial-S16-512', out_indices=(-1,)),
    decode_head=dict(in_channels=384))
