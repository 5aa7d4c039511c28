"""The main cross-framework test: one set of random weights in the released detectron2 layout runs (a) in
detectron2's Mask R-CNN with our backbone (configs/d2/mask_rcnn_pe_g14_coco.py) and (b) in our mmdet Mask R-CNN
(configs/mask_rcnn_pe_g14_coco.py) after ``tools/convert_checkpoint.py --kind d2-mask-rcnn``; same photo, each
framework's own loading and resizing. The two must agree at every stage.

Model: the G recipe at full width, cut to 2 blocks (block 0 windowed, block 1 global: the release's two block
kinds); the checkpoint has exactly the released keys and shapes for those blocks (``tests/convert/layouts``),
RoPE tables included. Input: the bundled VOC photo (500 x 375) at ``SIZE`` px (long side; square padding to SIZE)
instead of 1024, for time: a 40 x 40 token grid still tiles the 32 x 32 position grid and pads the windows (with
zeros in both frameworks, the release's ViTDet padding).

Post-processing, framework by framework (each config already matches the other):
- pixels: detectron2 ``read_image`` + ``ResizeShortestEdge(S, S)`` (PIL bilinear); the mmdet release config decodes
  and resizes with PIL too: the normalised, zero-padded input tensors are asserted identical.
- RPN: both take the top 1000 per level, decode (dx, dy, dw, dh) with the same clamp (log(1000 / 16)), clip to the
  image, drop empty boxes (min size 0), NMS 0.7 per level, keep 1000; detectron2 reports logits, mmdet sigmoids.
- RoIAlign: torchvision's ``roi_align`` (detectron2) vs mmcv's (aligned=True, sampling ratio 0 in both); level
  rule floor(4 + log2(sqrt(area) / 224)) in both, with eps 1e-8 (detectron2) vs 1e-6 (mmdet): a box within 1e-6
  of a level boundary could go to another level (none does here).
- Boxes: softmax, class-specific deltas with weights (10, 10, 5, 5) = stds (0.1, 0.1, 0.2, 0.2), clipped, score
  > 0.05, class-wise NMS 0.5, top 100; then scaled to the original image (detectron2 also clips there again, a
  no-op as boxes were clipped before scaling).
- Masks: sigmoid of the class's 28 x 28 logits, pasted into the original image and thresholded at 0.5 (both paste
  with ``grid_sample`` per box on CPU); pixels whose probability is within float error of 0.5 may flip.
Tolerances (float32; the frameworks differ in conv/LayerNorm/RoIAlign kernels and summation order, nothing else;
measured values in brackets): backbone maps 1e-5 relative (same tower code) [0]; pyramid 1e-4 relative; the 1000
proposals one to one, boxes within 1e-3 px [2e-4] and scores within 1e-5 [2.4e-7], the top 100 in the same order;
final: the same detections (count, classes, order), boxes within 1e-3 px [1e-4], scores within 5e-5 [1.1e-5],
masks IoU >= 0.99 each and at most 0.1% of mask pixels differing [0 pixels].
"""
import json
import os
import re

import numpy as np
import pytest
import torch

HERE = os.path.dirname(__file__)
REPO = os.path.join(HERE, "..", "..")
LAYOUT = os.path.join(HERE, "..", "convert", "layouts", "d2_mask_rcnn_pe_spatial_g_coco.json")
SIZE = 640
BLOCKS_FROM_RELEASE = {0: 0, 1: 49}  # our block -> the released block whose keys/shapes it has (windowed, global)


def release_layout_for_two_blocks():
    with open(LAYOUT) as f:
        full = json.load(f)
    out = {}
    for key, shape in full.items():
        m = re.match(r"backbone\.net\.transformer\.resblocks\.(\d+)\.(.+)", key)
        if m is None:
            out[key] = tuple(shape)
        for ours, theirs in BLOCKS_FROM_RELEASE.items():
            if m and int(m.group(1)) == theirs:
                out[f"backbone.net.transformer.resblocks.{ours}.{m.group(2)}"] = tuple(shape)
    return out


def init_weights(model, seed=0):
    """Deterministic random weights with unit-scale activations: fan-in normal for matrices and kernels, norm
    scales and LayerScale around 1, small biases, class logits spread so that some RoIs pass the 0.05 score."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "simfp" in name and p.ndim == 4 and p.shape[-1] == 2:  # ConvTranspose2d (in, out, 2, 2), stride 2
                p.normal_(0, p.shape[0] ** -0.5, generator=g)
            elif p.ndim >= 2:
                p.normal_(0, p[0].numel() ** -0.5, generator=g)
            elif name.endswith("bias"):
                p.normal_(0, 0.02, generator=g)
            else:
                p.uniform_(0.5, 1.5, generator=g)
        model.roi_heads.box_predictor.cls_score.bias.normal_(0, 2.0, generator=g)
        model.roi_heads.box_predictor.cls_score.weight.mul_(3.0)


def d2_model(device="cpu"):
    from detectron2.config import LazyConfig, instantiate
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "d2", "mask_rcnn_pe_g14_coco.py"))
    net = cfg.model.backbone.net
    net.model_overrides = dict(layers=2)
    net.global_blocks = (1,)
    net.grad_checkpointing = False
    cfg.model.backbone.square_pad = SIZE
    return instantiate(cfg.model).to(device).eval()


def mmdet_model_and_pipeline():
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import init_default_scope

    from pe_dense.engine.runner import build_config
    register_all_modules()
    init_default_scope("mmdet")
    cfg = build_config(os.path.join(REPO, "configs", "mask_rcnn_pe_g14_coco.py"))
    cfg.model.backbone.model_overrides = dict(patch_size=16, layers=2)
    cfg.model.backbone.global_blocks = (1,)
    cfg.model.data_preprocessor.pad_size_divisor = SIZE
    load, resize = cfg.test_pipeline[0], dict(cfg.test_pipeline[1], scale=(SIZE, SIZE))
    pack = dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))
    return MODELS.build(cfg.model).eval(), Compose([load, resize, pack])


@pytest.fixture(scope="module")
def runs(demo_coco, tmp_path_factory):
    import detectron2.data.transforms as T
    from detectron2.data.detection_utils import read_image

    from pe_dense.d2 import load_detector_checkpoint
    tmp = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    d2 = d2_model()
    init_weights(d2)
    src = str(tmp / "d2_release_layout.pth")
    torch.save({"model": d2.state_dict(), "iteration": 0}, src)
    d2 = d2_model()  # a fresh model, loaded from the file by detectron2's checkpointer, strictly
    load_detector_checkpoint(d2, src)

    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_checkpoint", os.path.join(REPO, "tools",
                                                                                     "convert_checkpoint.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    dst = str(tmp / "mmdet.pth")
    assert tool.main([src, dst, "--kind", "d2-mask-rcnn"]) == 0
    mm, pipeline = mmdet_model_and_pipeline()
    missing, unexpected = mm.load_state_dict(torch.load(dst, weights_only=True)["state_dict"], strict=True)
    assert not missing and not unexpected

    photo = os.path.join(demo_coco, "images", "voc.png")
    out = {"d2_state": d2.state_dict()}
    with torch.no_grad():  # one full inference per framework; the stages are captured on the way
        img = read_image(photo, format="RGB")
        resized = T.ResizeShortestEdge(SIZE, SIZE).get_transform(img).apply_image(img)
        inputs = [{"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
                   "height": img.shape[0], "width": img.shape[1]}]
        out["d2_input"] = d2.preprocess_image(inputs).tensor
        hooks = [d2.backbone.net.register_forward_hook(lambda m, i, o: out.update(d2_net=o["last_feat"])),
                 d2.backbone.register_forward_hook(
                     lambda m, i, o: out.update(d2_pyramid=[o[f"p{k}"] for k in range(2, 7)])),
                 d2.proposal_generator.register_forward_hook(lambda m, i, o: out.update(d2_proposals=o[0][0]))]
        out["d2_final"] = d2.inference(inputs)[0]["instances"]
        for h in hooks:
            h.remove()

        data = pipeline(dict(img_path=photo, img_id=0))
        batch = mm.data_preprocessor(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]), False)
        out["mm_input"] = batch["inputs"]
        mm.backbone.register_forward_hook(lambda m, i, o: out.update(mm_net=o[0]))
        mm.neck.register_forward_hook(lambda m, i, o: out.update(mm_pyramid=list(o)))
        rpn_predict = mm.rpn_head.predict

        def spy(*args, **kwargs):
            res = rpn_predict(*args, **kwargs)
            out["mm_proposals"] = res[0].clone()
            return res

        mm.rpn_head.predict = spy
        out["mm_final"] = mm.predict(batch["inputs"], batch["data_samples"])[0].pred_instances
    return out


def test_checkpoint_has_the_released_keys_and_shapes(runs):
    assert {k: tuple(v.shape) for k, v in runs["d2_state"].items()} == release_layout_for_two_blocks()


def test_same_input_tensor(runs):
    assert runs["d2_input"].shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(runs["mm_input"], runs["d2_input"], rtol=0, atol=0)


def test_backbone_and_pyramid_maps_agree(runs):
    ref = runs["d2_net"]
    assert ref.shape == (1, 1536, SIZE // 16, SIZE // 16)
    assert ((runs["mm_net"] - ref).abs().max() / ref.abs().max()).item() < 1e-5
    for level, (a, b) in enumerate(zip(runs["mm_pyramid"], runs["d2_pyramid"]), start=2):
        assert a.shape == b.shape == (1, 256, SIZE * 2 ** -level, SIZE * 2 ** -level)
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-4, f"p{level}"


def _iou(a, b):
    from torchvision.ops import box_iou
    return box_iou(a, b)


def test_rpn_proposals_agree(runs):
    d2p, mmp = runs["d2_proposals"], runs["mm_proposals"]
    d2_boxes, d2_scores = d2p.proposal_boxes.tensor, d2p.objectness_logits.sigmoid()
    assert len(d2_boxes) == len(mmp.bboxes) == 1000
    # order may differ among near-equal scores: match every d2 proposal to its best mmdet twin
    iou = _iou(d2_boxes, mmp.bboxes)
    best, idx = iou.max(dim=1)
    assert best.min() > 0.999  # (the thinnest proposals, 0.5 px tall at the image border, set the IoU bound)
    assert (d2_boxes - mmp.bboxes[idx]).abs().max() < 1e-3
    assert (d2_scores - mmp.scores[idx]).abs().max() < 1e-5
    assert len(set(idx.tolist())) == 1000  # one to one
    top = 100  # and the ranking agrees at the top
    assert torch.equal(idx[:top], torch.arange(top))


def test_final_boxes_scores_classes_masks_agree(runs):
    d2f, mmf = runs["d2_final"], runs["mm_final"]
    n = len(d2f)
    assert n > 10, "the random weights must produce detections to compare"
    assert len(mmf.bboxes) == n
    order_d2 = d2f.scores.argsort(descending=True)
    order_mm = mmf.scores.argsort(descending=True)
    boxes_d2, boxes_mm = d2f.pred_boxes.tensor[order_d2], mmf.bboxes[order_mm]
    assert torch.equal(d2f.pred_classes[order_d2], mmf.labels[order_mm])
    assert (boxes_d2 - boxes_mm).abs().max() < 1e-3
    assert (d2f.scores[order_d2] - mmf.scores[order_mm]).abs().max() < 5e-5
    masks_d2, masks_mm = d2f.pred_masks[order_d2], mmf.masks[order_mm]
    assert masks_d2.shape == masks_mm.shape == (n, 375, 500)
    inter = (masks_d2 & masks_mm).flatten(1).sum(1).float()
    union = (masks_d2 | masks_mm).flatten(1).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))  # two empty masks agree
    assert iou.min() >= 0.99
    assert (masks_d2 ^ masks_mm).sum() <= 1e-3 * masks_d2.sum()
