# NYUv2 depth, frozen PE-Spatial-B16-512, DINOv2's "linear" depth probe instead of DPT: the last block's tokens
# with the cls token concatenated to each, upsampled x4, BatchNorm, one 1x1 conv to 256 bins spaced linearly over
# [1e-3, 10] m, depth = expectation over the bins (ReLU + 0.1, normalised). Protocol and schedule arithmetic:
# _base_/depth_nyu.py. Other sizes: change model_name, in_channels and size_divisor as in depth_pe_<size>_nyu.py
# (G: cls_token='ignore' and output_cls_token=False). bin_spacing='log' spaces the bins uniformly in log depth.
_base_ = './depth_pe_b16_nyu.py'

bin_spacing = 'linear'
model = dict(
    decode_head=dict(
        _delete_=True, type='LinearDepthHead', in_channels=768, in_index=(-1,), cls_token='concat', upsample=4,
        output=dict(mode='bins', n_bins=256, spacing=bin_spacing, min_depth={{_base_.min_depth}},
                    max_depth={{_base_.max_depth}}),
        loss_decode={{_base_.depth_losses}}))
