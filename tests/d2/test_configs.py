"""configs/d2: every LazyConfig loads; the released recipes' settings and schedule arithmetic; the LVIS heads'
keys equal the released LVIS checkpoint's; the yacs BACKBONE_REGISTRY path; the ImportError without detectron2."""
import glob
import importlib
import json
import os
import sys
from functools import partial

import pytest
import torch

HERE = os.path.dirname(__file__)
CONFIGS = os.path.join(HERE, "..", "..", "configs", "d2")
SIZES = {"t16": "PE-Spatial-T16-512", "s16": "PE-Spatial-S16-512", "b16": "PE-Spatial-B16-512",
         "l14": "PE-Spatial-L14-448"}


def load(name):
    from detectron2.config import LazyConfig
    return LazyConfig.load(os.path.join(CONFIGS, name))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "*.py"))), ids=os.path.basename)
def test_every_config_loads(path):
    cfg = load(os.path.basename(path))
    assert {"model", "dataloader", "optimizer", "train", "lr_multiplier"} <= set(cfg)
    assert cfg.model.backbone.net.out_feature == cfg.model.backbone.in_feature == "last_feat"


def test_coco_g_is_the_release():
    from pe_dense.d2 import get_pe_lr_decay_rate
    cfg = load("mask_rcnn_pe_g14_coco.py")
    net = cfg.model.backbone.net
    assert (net.model_name, net.patch_size, net.img_size, net.window_size) == ("PE-Spatial-G14-448", 16, 1024, 32)
    assert tuple(net.global_blocks) == (12, 24, 36, 49) and net.drop_path_rate == 0.5 and net.grad_checkpointing
    assert (net.pos_embed_resize, net.window_padding) == ("tile", "zeros")
    assert list(cfg.model.pixel_mean) == list(cfg.model.pixel_std) == [127.0] * 3 and cfg.model.input_format == "RGB"
    assert tuple(cfg.model.backbone.scale_factors) == (4.0, 2.0, 1.0, 0.5) and cfg.model.backbone.square_pad == 1024
    assert cfg.optimizer.lr == 5e-5 and cfg.optimizer.weight_decay == 0.1
    assert cfg.optimizer.params.weight_decay_norm is None and dict(cfg.optimizer.params.overrides) == {}
    f = cfg.optimizer.params.lr_factor_func
    assert isinstance(f, partial) and f.func is get_pe_lr_decay_rate and f.keywords == dict(lr_decay_rate=0.9,
                                                                                         num_layers=50)
    assert cfg.dataloader.train.total_batch_size == 64 and cfg.train.amp.enabled
    # 184,375 x 36 // 100; lr steps at ViTDet's 163,889 and 177,546 x 36 // 100; 250 warm-up iterations
    assert cfg.train.max_iter == 66_375
    assert list(cfg.lr_multiplier.scheduler.milestones) == [59_000, 63_916]
    assert cfg.lr_multiplier.scheduler.num_updates == 66_375
    assert cfg.lr_multiplier.warmup_length * cfg.train.max_iter == pytest.approx(250)


def test_lvis_g_is_the_release():
    from detectron2.data.detection_utils import get_fed_loss_cls_weights
    from detectron2.data.samplers import RepeatFactorTrainingSampler
    from detectron2.evaluation.lvis_evaluation import LVISEvaluator
    cfg = load("mask_rcnn_pe_g14_lvis.py")
    p = cfg.model.roi_heads.box_predictor
    assert cfg.model.roi_heads.num_classes == 1203
    assert (p.use_sigmoid_ce, p.use_fed_loss, p.test_score_thresh, p.test_topk_per_image) == (True, True, 0.02, 300)
    from detectron2.config import instantiate
    w = instantiate(cfg.model.roi_heads.box_predictor.get_fed_loss_cls_weights)  # what the head will call
    assert w.func is get_fed_loss_cls_weights and w.args == ("lvis_v1_train", 0.5)
    rf = cfg.dataloader.train.sampler
    assert rf._target_ is RepeatFactorTrainingSampler and rf.repeat_factors.repeat_thresh == 0.001
    assert cfg.dataloader.evaluator._target_ is LVISEvaluator and cfg.dataloader.evaluator.max_dets_per_image == 300
    # 184,375 x 3 // 4; steps 163,889 and 177,546 x 3 // 4
    assert cfg.train.max_iter == 138_281 and cfg.lr_multiplier.scheduler.num_updates == 138_281
    assert list(cfg.lr_multiplier.scheduler.milestones) == [122_916, 133_159]
    assert cfg.lr_multiplier.warmup_length * cfg.train.max_iter == pytest.approx(250)
    assert cfg.train.eval_period == 30_000 and cfg.model.pixel_mean[0] == 127.0


def test_lvis_heads_have_the_released_keys():
    """The LVIS model's RPN and RoI heads (sigmoid + fed loss: 1204 logits, the fed_loss_cls_weights buffer) have
    the released LVIS checkpoint's keys and shapes. Built on a 1-block T tower (the heads do not depend on it)."""
    from detectron2.config import instantiate
    cfg = load("mask_rcnn_pe_g14_lvis.py")
    cfg.model.backbone.net.update(model_name="PE-Spatial-T16-512", model_overrides=dict(layers=1), global_blocks=[0])
    cfg.model.roi_heads.box_predictor.get_fed_loss_cls_weights = lambda: torch.ones(1203)  # no LVIS files here
    model = instantiate(cfg.model)
    with open(os.path.join(HERE, "..", "convert", "layouts", "d2_mask_rcnn_pe_spatial_g_lvis.json")) as f:
        released = {k: tuple(v) for k, v in json.load(f).items() if not k.startswith("backbone.")}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    assert ours == released
    assert ours["roi_heads.box_predictor.cls_score.weight"] == (1204, 1024)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_size_configs_keep_pe_defaults(size):
    cfg = load(f"mask_rcnn_pe_{size}_coco.py")
    net = cfg.model.backbone.net
    assert net.model_name == SIZES[size] and net.patch_size == 16
    assert list(cfg.model.pixel_mean) == [127.5] * 3  # PE's normalisation: no release to match
    assert cfg.optimizer.params.weight_decay_norm == 0.0
    assert dict(cfg.optimizer.params.overrides)["positional_embedding"] == {"weight_decay": 0.0}
    layers = 24 if size == "l14" else 12
    assert cfg.optimizer.params.lr_factor_func.keywords["num_layers"] == layers
    assert max(net.global_blocks) == layers - 1 and cfg.train.max_iter == 66_375


def test_yacs_registry_builds_the_same_pyramid():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from pe_dense.d2 import PEViTDetNet, add_pe_config
    cfg = add_pe_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_pe_vitdet_backbone"
    cfg.MODEL.PE.NAME, cfg.MODEL.PE.LAYERS, cfg.MODEL.PE.GLOBAL_BLOCKS = "PE-Spatial-T16-512", 2, [1]
    cfg.MODEL.PE.IMG_SIZE, cfg.MODEL.PE.WINDOW_SIZE = 256, 8
    backbone = build_backbone(cfg)
    assert isinstance(backbone.net, PEViTDetNet) and backbone.net.cfg.layers == 2
    assert backbone.padding_constraints["square_size"] == 256
    out = backbone(torch.randn(1, 3, 256, 256))
    assert {k: tuple(v.shape) for k, v in out.items()} == {f"p{i}": (1, 256, 256 >> i, 256 >> i) for i in range(2, 7)}
    with pytest.raises(KeyError, match="add_pe_config"):
        bare = get_cfg()
        bare.MODEL.BACKBONE.NAME = "build_pe_vitdet_backbone"
        build_backbone(bare)


def test_import_without_detectron2_names_the_install_step(monkeypatch):
    for name in [m for m in sys.modules if m == "detectron2" or m.startswith(("detectron2.", "pe_dense.d2"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "detectron2", None)  # import detectron2 -> ImportError
    with pytest.raises(ImportError, match=r"pe_dense\[d2\].*--find-links|find-links.*pe_dense\[d2\]") as err:
        importlib.import_module("pe_dense.d2")
    assert "git+https://github.com/facebookresearch/detectron2.git" in str(err.value)
