# NYUv2 depth, frozen PE-Spatial-G14-448, DPT head on the last block (the paper's one-layer setting;
# protocol and schedule arithmetic in _base_/depth_nyu.py: 20 epochs of 1,515 iterations at batch 16,
# best validation RMSE).
# Four layers instead (DINOv2's DPT): backbone out_indices=(9, 19, 29, 39)
# (1-based {10, 20, 30, 40}), the head takes all four.
# G has no cls token: the backbone returns plain maps and the DPT readout ignores the cls slot.
_base_ = './_base_/depth_nyu.py'

model = dict(
    data_preprocessor=dict(size_divisor=14, test_cfg=dict(size_divisor=14)),
    backbone=dict(model_name='PE-Spatial-G14-448', out_indices=(-1,), output_cls_token=False),
    decode_head=dict(in_channels=1536, readout='ignore'))
