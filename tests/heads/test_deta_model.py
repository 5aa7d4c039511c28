"""DETA end to end on a tiny PE backbone: forward/backward, loss definitions, learning on a real photo, inference."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _deta_tiny import build, make_sample, tiny_deta_cfg
from pe_dense.heads.deta import stage1_assigner_cfg, stage2_assigner_cfg


@pytest.fixture(autouse=True)
def _one_thread():
    """Small ops on a shared 2-core machine run ~15x faster single-threaded."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _astronaut(size=128):
    """skimage's astronaut as a uint8 BGR (3, size, size) tensor, with hand-drawn boxes (person, rocket)."""
    import skimage.data

    img = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float()
    img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True).round().clamp(0, 255)
    boxes = np.array([[20, 15, 372, 512], [352, 0, 472, 282]], dtype=np.float32) * size / 512
    return img[0].flip(0).to(torch.uint8), boxes.tolist(), [0, 1]


def _batch(model, images, samples, training=True):
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), training=training)
    return data["inputs"], data["data_samples"]


def test_forward_backward_reaches_every_part():
    model = build(tiny_deta_cfg())
    imgs = [torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8) for _ in range(2)]
    samples = [make_sample((128, 128), [[10, 20, 60, 90], [70, 70, 120, 110]], [0, 2]),
               make_sample((128, 128), [[30, 30, 100, 100]], [1])]
    inputs, samples = _batch(model, imgs, samples)
    losses = model.loss(inputs, samples)
    expected = {f"{p}loss_{k}" for p in ("", "d0.", "enc_") for k in ("cls", "bbox", "iou")}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name in ("backbone.conv1.weight", "backbone.transformer.resblocks.1.mlp.c_fc.weight", "neck.fpn1.weight",
                 "encoder.layers.0.self_attn.sampling_offsets.weight", "decoder.layers.1.cross_attn.value_proj.weight",
                 "pix_trans_fc.weight", "bbox_head.cls_branches.2.weight", "bbox_head.reg_branches.0.4.weight"):
        # (reg_branches end in a zero-initialised Linear, so only that last one has gradients at step 0)
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_image_without_objects_trains():
    model = build(tiny_deta_cfg())
    inputs, samples = _batch(model, [torch.zeros(3, 128, 128, dtype=torch.uint8)],
                             [make_sample((128, 128), [], [])])
    losses = model.loss(inputs, samples)
    assert losses["loss_bbox"].item() == 0 and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()


def _focal_zero_logit(num_pos, num_neg, alpha=0.25):
    """Focal loss (gamma 2) summed over entries with logit 0: p = 0.5."""
    return num_pos * alpha * 0.25 * math.log(2) + num_neg * (1 - alpha) * 0.25 * math.log(2)


def test_losses_follow_deta_definitions():
    """Stage 2 assigns on the initial references for every layer; losses are divided by the number of GT boxes."""
    model = build(tiny_deta_cfg(num_classes=3, num_queries=4))
    head = model.bbox_head
    gt = make_sample((100, 100), [[10, 10, 50, 50]], [1])
    far = [0.9, 0.9, 0.05, 0.05]
    init_refs = torch.tensor([[[0.3, 0.3, 0.4, 0.4], far, far, far]])  # query 0 is exactly the GT
    cls = torch.zeros(2, 1, 4, 3)
    boxes = torch.tensor(far).repeat(2, 1, 4, 1)
    boxes[:, 0, 0] = torch.tensor([0.35, 0.3, 0.4, 0.4])  # query 0 predicts the GT shifted by 0.05 in cx
    boxes[0, 0, 1] = torch.tensor([0.3, 0.3, 0.4, 0.4])  # layer 0's query 1 is perfect, but it is not assigned
    anchors = torch.tensor([[[0.3, 0.3, 0.4, 0.4], [0.3, 0.32, 0.4, 0.36], far, far, far]])  # IoU 1, 0.9, 0, ...
    enc_boxes = anchors.clone()
    enc_boxes[0, 1] = torch.tensor([0.3, 0.3, 0.4, 0.4])  # the proposal on anchor 1 is exact
    enc_boxes[0, 0, 1] += 0.1  # the proposal on anchor 0 is off by 0.1 in cy
    valid = torch.ones(1, 5, dtype=torch.bool)
    losses = head.loss_by_feat(cls, boxes, init_refs, torch.zeros(1, 5, 3), enc_boxes, anchors, valid,
                               [gt.gt_instances], [gt.metainfo])
    assert losses["loss_bbox"].item() == pytest.approx(5 * 0.05, rel=1e-5)
    assert losses["d0.loss_bbox"].item() == pytest.approx(5 * 0.05, rel=1e-5)  # not 0: query 1 is a negative
    assert losses["loss_cls"].item() == pytest.approx(_focal_zero_logit(1, 11), rel=1e-4)
    assert losses["loss_iou"].item() > 0
    # stage 1: anchors 0 (IoU 1) and 1 (IoU 0.9) are positives of class 0; only anchor 0's proposal is off
    assert losses["enc_loss_bbox"].item() == pytest.approx(5 * 0.1, rel=1e-5)
    assert losses["enc_loss_cls"].item() == pytest.approx(_focal_zero_logit(2, 13), rel=1e-4)
    # an invalid anchor is never positive
    valid[0, 0] = False
    losses = head.loss_by_feat(cls, boxes, init_refs, torch.zeros(1, 5, 3), enc_boxes, anchors, valid,
                               [gt.gt_instances], [gt.metainfo])
    assert losses["enc_loss_bbox"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["enc_loss_cls"].item() == pytest.approx(_focal_zero_logit(1, 14), rel=1e-4)


def test_losses_are_normalised_by_gt_count_not_positives():
    train_cfg = dict(stage1=stage1_assigner_cfg(), stage2=stage2_assigner_cfg(num=16))  # room for 4 positives
    model = build(tiny_deta_cfg(num_classes=3, num_queries=4, train_cfg=train_cfg))
    gt = make_sample((100, 100), [[10, 10, 50, 50], [60, 60, 90, 90]], [1, 2])
    refs = torch.tensor([[[0.3, 0.3, 0.4, 0.4], [0.3, 0.3, 0.4, 0.38], [0.75, 0.75, 0.3, 0.3], [0.9, 0.9, .05, .05]]])
    boxes = refs.clone()[None].repeat(2, 1, 1, 1)
    boxes[:, 0, :, 0] += 0.05  # every query off by 0.05 in cx
    losses = model.bbox_head.loss_by_feat(torch.zeros(2, 1, 4, 3), boxes, refs, None, None, None, None,
                                          [gt.gt_instances], [gt.metainfo])
    # 3 positives (queries 0 and 1 on GT 0, query 2 on GT 1; query 1 is also 0.02 short in h), over 2 GTs
    assert losses["loss_bbox"].item() == pytest.approx(5 * (0.05 + 0.07 + 0.05) / 2, rel=1e-5)


def test_losses_decrease_on_a_real_photo():
    torch.manual_seed(0)
    model = build(tiny_deta_cfg(num_classes=2))
    img, boxes, labels = _astronaut()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    history = []
    for _ in range(25):
        inputs, samples = _batch(model, [img], [make_sample((128, 128), boxes, labels)])
        losses = model.loss(inputs, samples)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    first, last = history[0], history[-1]
    total = [sum(h.values()) for h in history]
    assert total[-1] < 0.6 * total[0], total
    assert last["loss_bbox"] + last["loss_iou"] < 0.75 * (first["loss_bbox"] + first["loss_iou"])
    assert last["enc_loss_bbox"] + last["enc_loss_iou"] < 0.8 * (first["enc_loss_bbox"] + first["enc_loss_iou"])


def test_predict_returns_nms_detections_in_original_coordinates():
    model = build(tiny_deta_cfg(num_classes=3, test_cfg=dict(max_per_img=15)))
    model.eval()
    sample = make_sample((128, 128), [[10, 10, 60, 60]], [0], scale_factor=(0.5, 0.5), ori_hw=(256, 256))
    inputs, samples = _batch(model, [torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)], [sample], False)
    with torch.no_grad():
        pred = model.predict(inputs, samples)[0].pred_instances
    assert len(pred) == 15
    assert (pred.scores[:-1] >= pred.scores[1:]).all()
    assert pred.bboxes.min() >= 0 and pred.bboxes.max() <= 256  # clipped to 128, then scaled by 1 / 0.5
    assert pred.bboxes.max() > 128  # rescaled: boxes live in the 256 x 256 original image


def test_plain_topk_and_soft_nms_test_options():
    model = build(tiny_deta_cfg(num_classes=3, test_cfg=dict(nms=None, max_per_img=7)))
    model.eval()
    inputs, samples = _batch(model, [torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)],
                             [make_sample((128, 128), [], [])], False)
    with torch.no_grad():
        assert len(model.predict(inputs, samples)[0].pred_instances) == 7
        model.bbox_head.test_cfg = dict(pre_topk=2000, max_per_img=None, clip_boxes=True,
                                        nms=dict(type="soft_nms", method="quad", quad_scale=0.5))
        soft = model.predict(inputs, samples)[0].pred_instances
    assert len(soft) > 7  # soft-NMS keeps every pair above the pruning score
    assert (soft.scores > 0.001).all()


def test_more_queries_than_encoder_positions_is_a_clear_error():
    model = build(tiny_deta_cfg(num_queries=400))  # a 128 x 128 input has 16^2+8^2+4^2+2^2+1 = 341 positions
    inputs, samples = _batch(model, [torch.zeros(3, 128, 128, dtype=torch.uint8)],
                             [make_sample((128, 128), [[0, 0, 10, 10]], [0])])
    with pytest.raises(ValueError, match="lower num_queries or feed larger images"):
        model.loss(inputs, samples)


def test_deta_refuses_one_stage():
    with pytest.raises(ValueError, match="as_two_stage must be True"):
        build(tiny_deta_cfg(as_two_stage=False))


def test_missing_train_cfg_stages_get_deta_defaults():
    model = build(tiny_deta_cfg(num_queries=30, train_cfg=dict()))
    s1, s2 = model.bbox_head.stage1_assigner, model.bbox_head.stage2_assigner
    assert (s1.assigner.pos_iou_thr, s1.assigner.neg_iou_thr, s1.sampler.num, s1.max_pos_per_gt) == (0.7, 0.3, 256, 4)
    assert (s2.assigner.pos_iou_thr, s2.sampler.num, s2.sampler.pos_fraction) == (0.6, 30, 0.25)
