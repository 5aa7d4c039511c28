"""Our Mask R-CNN (PEBackbone + SimpleFeaturePyramid + LN heads), built from the configs, trains on real photos."""
import copy
import os

import pytest
import torch
from _mask_rcnn_tiny import CONFIGS, tiny_demo_cfg


def _model_and_batch(cfg):
    from mmdet.registry import DATASETS, MODELS
    from mmdet.utils import register_all_modules
    from mmengine.dataset import pseudo_collate

    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    return model, pseudo_collate([ds[0], ds[1]])


def _steps(model, batch, n, lr=1e-3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    totals = []
    for _ in range(n):
        torch.manual_seed(1)  # the same RoI sample every step: a noise-free loss curve
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        loss, logs = model.parse_losses(model(**data, mode="loss"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(float(loss))
    return totals, logs


def test_forward_backward_and_loss_decreases(demo_data, tmp_path):
    cfg = tiny_demo_cfg(demo_data, tmp_path, size=128, layers=1)
    cfg.model.backbone.frozen = False
    model, batch = _model_and_batch(cfg)
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    loss, logs = model.parse_losses(model(**data, mode="loss"))
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"} <= set(logs)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # class_embedding feeds only the cls token, which no detection output reads
    assert no_grad in ([], ["backbone.class_embedding"]), no_grad
    assert model.backbone.conv1.weight.grad.abs().sum() > 0

    totals, logs = _steps(model, batch, 6)
    assert totals[-1] < 0.8 * totals[0], totals


def test_predict_returns_boxes_and_masks_in_image_coordinates(demo_data, tmp_path):
    cfg = tiny_demo_cfg(demo_data, tmp_path, size=160, layers=1)
    model, _ = _model_and_batch(cfg)
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    ds = DATASETS.build(cfg.test_dataloader.dataset)
    model.eval()
    with torch.no_grad():
        out = model.test_step(pseudo_collate([ds[0]]))[0]
    h, w = out.ori_shape
    inst = out.pred_instances
    assert (h, w) == (375, 500)
    assert inst.masks.shape[1:] == (h, w)
    if len(inst):
        assert inst.bboxes[:, 2].max() <= w + 1 and inst.bboxes[:, 3].max() <= h + 1


def test_federated_head_trains_and_predicts_inside_mask_rcnn(demo_data, tmp_path):
    """The LVIS head (sigmoid + federated loss) in the demo model: losses, gradients, mmdet's predict path."""
    from mmengine.config import Config
    lvis = Config.fromfile(os.path.join(CONFIGS, "mask_rcnn_pe_g14_lvis.py"))
    cfg = tiny_demo_cfg(demo_data, tmp_path, size=128, layers=1)
    head = copy.deepcopy(lvis.model.roi_head.bbox_head)
    head.update(in_channels=128, conv_out_channels=128, fc_out_channels=256, num_classes=12,
                fed_loss_num_classes=4)
    cfg.model.roi_head.bbox_head = head
    model, batch = _model_and_batch(cfg)
    totals, logs = _steps(model, batch, 4)
    assert torch.isfinite(torch.tensor(totals)).all() and "acc" in logs
    fc_cls = model.roi_head.bbox_head.fc_cls
    assert fc_cls.out_features == 13  # 12 classes + unused background logit (detectron2's LVIS layout)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batch), False)
        preds = model(**data, mode="predict")
    labels = torch.cat([p.pred_instances.labels for p in preds])
    assert labels.numel() == 0 or labels.max() < 12


pytestmark = pytest.mark.filterwarnings("ignore")
