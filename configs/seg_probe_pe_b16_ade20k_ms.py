# ADE20k "+ms" probe on frozen PE-Spatial-B16-512: the last 4 blocks concatenated ("linear4", BN + 1x1 conv on
# 4 x 768 = 3072 channels), trained as seg_probe_pe_b16_ade20k.py; evaluate with multi-scale + flip:
#   python tools/test.py configs/seg_probe_pe_b16_ade20k_ms.py CHECKPOINT --tta
# (short side 512 x (1, 1.32, 1.73, 2.28, 3), each flipped; mmseg's SegTTAModel, see the base config).
_base_ = './seg_probe_pe_b16_ade20k.py'

model = dict(
    backbone=dict(out_indices=(-4, -3, -2, -1)),  # blocks 8..11 (0-based)
    decode_head=dict(in_index=(0, 1, 2, 3)))
