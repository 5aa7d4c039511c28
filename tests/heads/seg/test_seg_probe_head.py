"""LinearProbeHead: values against hand computations, concatenation order, cls tokens, odd sizes."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("mmseg")


def make_head(**kw):
    import pe_dense.heads.seg  # noqa: F401  (registers the head)
    from pe_dense.heads.seg import LinearProbeHead
    kw.setdefault("in_channels", 4)
    kw.setdefault("num_classes", 3)
    return LinearProbeHead(**kw)


def set_bn(bn, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))


def bn_by_hand(x, bn):
    shape = (1, -1, 1, 1)
    return ((x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def test_bn_linear_is_batchnorm_then_a_linear_map_per_token():
    head = make_head().eval()
    set_bn(head.bn, 4)
    x = torch.randn(2, 4, 3, 5)
    y = bn_by_hand(x, head.bn)
    w, b = head.conv_seg.weight[:, :, 0, 0], head.conv_seg.bias
    expected = torch.einsum("kc,bchw->bkhw", w, y) + b.view(1, -1, 1, 1)
    out = head((x,))
    assert out.shape == (2, 3, 3, 5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert head.dropout is None  # DINOv2's probe has no dropout


def test_bn_uses_batch_statistics_in_training():
    head = make_head().train()
    x = torch.randn(2, 4, 3, 5) * 3 + 1
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    y = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + head.bn.eps)
    expected = F.conv2d(y * head.bn.weight.view(1, -1, 1, 1) + head.bn.bias.view(1, -1, 1, 1),
                        head.conv_seg.weight, head.conv_seg.bias)
    torch.testing.assert_close(head((x,)), expected, rtol=1e-5, atol=1e-5)


def test_linear_conv_probe_is_bn_then_1x1_then_kxk_conv():
    head = make_head(probe="linear_conv", hidden_channels=6, conv_kernel_size=3).eval()
    set_bn(head.bn, 4)
    assert head.linear.weight.shape == (6, 4, 1, 1) and head.conv_seg.weight.shape == (3, 6, 3, 3)
    x = torch.randn(1, 4, 5, 7)
    hidden = torch.einsum("oc,bchw->bohw", head.linear.weight[:, :, 0, 0], bn_by_hand(x, head.bn))
    hidden = hidden + head.linear.bias.view(1, -1, 1, 1)
    expected = F.conv2d(hidden, head.conv_seg.weight, head.conv_seg.bias, padding=1)
    out = head((x,))
    assert out.shape == (1, 3, 5, 7)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_layers_concatenate_in_in_index_order_with_each_cls_token_after_its_map():
    head = make_head(in_channels=2, in_index=(2, 0), use_cls_token=True)
    assert head.bn.num_features == 8 and head.conv_seg.in_channels == 8
    maps = [torch.full((1, 2, 3, 4), 10.0 * i) + torch.arange(2.0).view(1, 2, 1, 1) for i in range(3)]
    cls = [torch.tensor([[100.0 + i, 200.0 + i]]) for i in range(3)]
    x = head._transform_inputs(tuple(zip(maps, cls)))
    assert x.shape == (1, 8, 3, 4)
    # [map2 | cls2 | map0 | cls0], each cls broadcast over the grid
    torch.testing.assert_close(x[:, 0:2], maps[2])
    torch.testing.assert_close(x[:, 2:4], cls[2].view(1, 2, 1, 1).expand(1, 2, 3, 4))
    torch.testing.assert_close(x[:, 4:6], maps[0])
    torch.testing.assert_close(x[:, 6:8], cls[0].view(1, 2, 1, 1).expand(1, 2, 3, 4))
    # without use_cls_token the pairs' cls tokens are ignored
    plain = make_head(in_channels=2, in_index=(2, 0))
    torch.testing.assert_close(plain._transform_inputs(tuple(zip(maps, cls))), torch.cat([maps[2], maps[0]], 1))


def test_cls_concat_is_refused_when_the_backbone_gives_no_cls_token():
    head = make_head(use_cls_token=True)
    with pytest.raises(ValueError, match="output_cls_token=True.*G has none"):
        head((torch.randn(1, 4, 2, 2),))


def test_wrong_width_and_wrong_in_index_name_the_fix():
    with pytest.raises(ValueError, match="in_channels"):
        make_head()((torch.randn(1, 5, 2, 2),))
    with pytest.raises(IndexError, match="out_indices"):
        make_head(in_index=(0, 1))((torch.randn(1, 4, 2, 2),))
    with pytest.raises(ValueError, match="probe="):
        make_head(probe="mlp")


def test_backbone_cls_token_option_returns_token_zero_and_g_refuses_it():
    from pe_dense.mm import PEBackbone
    bb = PEBackbone("PE-Spatial-T16-512", out_indices=(0, -1), model_overrides=dict(layers=2),
                    output_cls_token=True).eval()
    x = torch.randn(1, 3, 48, 64)
    outs = bb(x)
    assert len(outs) == 2 and all(len(o) == 2 for o in outs)
    for layer, (fmap, cls) in zip((0, 1), outs):
        tokens = bb.forward_features(x, layer_idx=layer)
        assert fmap.shape == (1, 192, 3, 4) and cls.shape == (1, 192)
        torch.testing.assert_close(cls, tokens[:, 0])
        torch.testing.assert_close(fmap, tokens[:, 1:].transpose(1, 2).reshape(1, 192, 3, 4))
    with pytest.raises(ValueError, match="no cls token.*output_cls_token=False"):
        PEBackbone("PE-Spatial-G14-448", model_overrides=dict(layers=1, width=32, heads=2, mlp_width=64),
                   output_cls_token=True)


def test_padding_aware_upsampling_crops_the_patch_padding():
    head = make_head(patch_size=16)
    logits = torch.randn(1, 3, 3, 4)  # a 37x50 input padded to 48x64 by the backbone
    out = head.resize_logits(logits, (37, 50))
    assert out.shape == (1, 3, 37, 50)
    torch.testing.assert_close(out, F.interpolate(logits, size=(48, 64), mode="bilinear")[..., :37, :50])
    # a multiple of the patch: plain bilinear resizing, as mmseg
    torch.testing.assert_close(head.resize_logits(logits, (48, 64)), F.interpolate(logits, (48, 64), mode="bilinear"))
    # without patch_size: mmseg's stretch
    torch.testing.assert_close(make_head().resize_logits(logits, (37, 50)),
                               F.interpolate(logits, (37, 50), mode="bilinear"))


def test_loss_is_cross_entropy_of_logits_upsampled_bilinearly_to_the_label_size():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    head = make_head(patch_size=4)
    logits = torch.randn(2, 3, 3, 3)
    labels = torch.randint(0, 3, (2, 1, 10, 11))
    labels[0, 0, :2] = 255  # ignored
    samples = [SegDataSample(gt_sem_seg=PixelData(data=lab)) for lab in labels]
    loss = head.loss_by_feat(logits, samples)
    up = F.interpolate(logits, size=(12, 12), mode="bilinear")[..., :10, :11]
    # mmseg's default (avg_non_ignore=False, as in DINOv2's runs): ignored pixels count in the denominator
    expected = F.cross_entropy(up, labels[:, 0].long(), ignore_index=255, reduction="sum") / labels.numel()
    torch.testing.assert_close(loss["loss_ce"], expected)


def test_odd_input_sizes_give_logits_and_predictions_of_the_label_size():
    import pe_dense.heads.seg  # noqa: F401
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    import pe_dense.mm  # noqa: F401
    init_default_scope("mmseg")
    model = MODELS.build(dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[127.5] * 3, std=[127.5] * 3, size_divisor=1),
        backbone=dict(type="PEBackbone", model_name="PE-Spatial-L14-448", frozen=True,
                      model_overrides=dict(layers=1, width=32, heads=2, mlp_width=64)),
        decode_head=dict(type="LinearProbeHead", in_channels=32, num_classes=3, patch_size=14),
        test_cfg=ConfigDict(mode="slide", crop_size=(30, 30), stride=(20, 20))))
    img = torch.randint(0, 255, (3, 45, 61), dtype=torch.uint8)
    label = torch.randint(0, 3, (1, 45, 61))
    sample = SegDataSample(gt_sem_seg=PixelData(data=label),
                           metainfo=dict(img_shape=(45, 61), ori_shape=(45, 61), pad_shape=(45, 61)))
    data = model.data_preprocessor(dict(inputs=[img], data_samples=[sample]), training=True)
    losses = model.loss(**data)
    assert losses["decode.loss_ce"].isfinite()
    pred = model.predict(data["inputs"], data["data_samples"])[0]
    assert pred.seg_logits.shape == (45, 61) and pred.pred_sem_seg.shape == (45, 61)
    model.test_cfg.mode = "whole"
    odd = model.predict(data["inputs"], data["data_samples"])[0].seg_logits.data
    assert odd.shape == (3, 45, 61)
    # pixel-aligned: the same as predicting on the image padded by hand (0 = the normalised pad) and cropping
    padded = F.pad(data["inputs"], (0, 70 - 61, 0, 56 - 45))
    meta = dict(img_shape=(56, 70), ori_shape=(56, 70), pad_shape=(56, 70))
    full = model.predict(padded, [SegDataSample(metainfo=meta)])[0].seg_logits.data
    torch.testing.assert_close(odd, full[:, :45, :61])
    model.decode_head.patch_size = None  # mmseg's stretch over the padded grid is not
    assert not torch.allclose(model.predict(data["inputs"], data["data_samples"])[0].seg_logits.data, odd)
