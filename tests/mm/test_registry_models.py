"""An mmdet detector and an mmseg segmentor built from configs with the registered parts: forward + backward."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

BACKBONE = dict(type="PEBackbone", model_name="PE-Spatial-T16-512", model_overrides=dict(layers=2),
                window_size=4, global_blocks=[-1], drop_path_rate=0.1)


def _real_batch(real_image, size):
    x = real_image(size=size)
    return ((x * 0.5 + 0.5) * 255).clamp(0, 255)[0]  # back to 0..255 RGB, as data pipelines deliver


def _backbone_grads(model):
    return [p.grad for n, p in model.backbone.named_parameters() if p.requires_grad]


def test_mmdet_retinanet_on_pe_trains(real_image):
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    import pe_dense.mm  # noqa: F401  (explicit registration, as custom_imports does)
    init_default_scope("mmdet")
    cfg = Config(dict(model=dict(
        type="RetinaNet",
        data_preprocessor=dict(type="DetDataPreprocessor", **pe_dense.mm.PE_DATA_PREPROCESSOR, pad_size_divisor=64),
        backbone=BACKBONE,
        neck=dict(type="SimpleFeaturePyramid", in_channels=192, out_channels=64, scale_factors=(2.0, 1.0, 0.5)),
        bbox_head=dict(type="RetinaHead", num_classes=2, in_channels=64, feat_channels=64, stacked_convs=1,
                       anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=1,
                                             ratios=[1.0], strides=[8, 16, 32, 64]),
                       bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                       loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                       loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0),
                       sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5),
                      max_per_img=10))))
    model = MODELS.build(cfg.model)
    model.init_weights()
    sample = DetDataSample(metainfo=dict(img_shape=(192, 192), ori_shape=(192, 192), pad_shape=(192, 192),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[40.0, 20.0, 150.0, 180.0]]), labels=torch.tensor([1]))
    data = model.data_preprocessor(dict(inputs=[_real_batch(real_image, (192, 192))], data_samples=[sample]), True)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        optim.zero_grad()
        loss.backward()
        losses.append(loss.item())
        optim.step()
    assert all(g is not None and g.abs().sum() > 0 for g in _backbone_grads(model))
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        pred = model(**data, mode="predict")[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred) <= 10


def test_mmseg_upernet_on_pe_trains(real_image):
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    import pe_dense.mm  # noqa: F401
    init_default_scope("mmseg")
    cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", **pe_dense.mm.PE_DATA_PREPROCESSOR, size=(128, 128)),
        backbone=dict(BACKBONE, out_indices=(0, 1, 1, 1)),
        neck=dict(type="SimpleFeaturePyramid", in_channels=192, out_channels=64, add_pool_level=False,
                  in_index=[0, 1, 2, 3]),
        decode_head=dict(type="UPerHead", in_channels=[64] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2),
                         channels=32, num_classes=3, norm_cfg=dict(type="BN", requires_grad=True),
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(), test_cfg=dict(mode="whole"))
    model = MODELS.build(cfg)
    label = np.zeros((128, 128), dtype=np.int64)
    label[32:96, 20:70] = 1
    label[80:, 90:] = 2
    sample = SegDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128), pad_shape=(128, 128)))
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(label)[None])
    data = model.data_preprocessor(dict(inputs=[_real_batch(real_image, (128, 128))] * 2,
                                        data_samples=[sample, sample]), True)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        optim.zero_grad()
        loss.backward()
        losses.append(loss.item())
        optim.step()
    assert all(g is not None and g.abs().sum() > 0 for g in _backbone_grads(model))
    assert losses[-1] < losses[0]


def test_backbone_frozen_and_checkpoint(tmp_path):
    from mmdet.registry import MODELS

    import pe_dense.mm  # noqa: F401
    from pe_dense.models.pe import PEVisionTransformer
    src = PEVisionTransformer.from_config("PE-Core-T16-384", layers=2, image_size=512)
    path = str(tmp_path / "core.pt")
    torch.save(src.state_dict(), path)  # a Core file: its pool/projection are dropped for a spatial backbone
    bb = MODELS.build(dict(BACKBONE, checkpoint=path, frozen=True, window_size=0))
    bb.init_weights()
    torch.testing.assert_close(bb.conv1.weight, src.conv1.weight)
    bb.train()
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        MODELS.build(dict(BACKBONE, init_cfg=dict(type="Pretrained", checkpoint="x")))


def test_backbone_only_autocast(real_image):
    from mmdet.registry import MODELS

    import pe_dense.mm  # noqa: F401
    torch.manual_seed(0)
    full = MODELS.build(dict(BACKBONE, drop_path_rate=0.0)).eval()
    half = MODELS.build(dict(BACKBONE, drop_path_rate=0.0, autocast_dtype="bfloat16")).eval()
    half.load_state_dict(full.state_dict())
    x = real_image(size=(64, 64))
    with torch.no_grad():
        ref, low = full(x)[0], half(x)[0]
    assert low.dtype == torch.float32
    err = ((low - ref).norm() / ref.norm()).item()
    assert 0 < err < 0.05  # bf16 was really used (not bit-identical) and stays close
    with pytest.raises(ValueError, match="autocast_dtype"):
        MODELS.build(dict(BACKBONE, autocast_dtype="float64"))
