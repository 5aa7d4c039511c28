"""Every NYU depth config parses, carries the protocol's numbers, and builds a model that predicts depth (backbones
cut to 2 blocks so G builds in seconds)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SIZES = {"t16": (192, 16, True), "s16": (384, 16, True), "b16": (768, 16, True), "l14": (1024, 14, True),
         "g14": (1536, 14, False)}
ALL = [f"depth_pe_{s}_nyu.py" for s in SIZES] + ["depth_pe_b16_nyu_linear.py", "demo/depth_pe_t16_demo.py"]


def test_base_protocol_numbers():
    cfg = Config.fromfile(str(CONFIGS / "depth_pe_b16_nyu.py"))
    assert cfg.train_cfg.max_epochs == 20 and cfg.train_dataloader.batch_size == 16
    assert cfg.iters_per_epoch == -(-24_231 // 16)
    assert cfg.param_scheduler[-1].end == 20 * cfg.iters_per_epoch
    ckpt = cfg.default_hooks.checkpoint
    assert (ckpt.save_best, ckpt.rule) == ("rmse", "less")
    assert cfg.val_evaluator.type == "PEDepthMetric" and cfg.val_evaluator.crop_type == "eigen"
    assert (cfg.val_evaluator.min_depth_eval, cfg.val_evaluator.max_depth_eval) == (1e-3, 10.0)
    assert cfg.model.test_cfg.flip is True
    assert cfg.model.data_preprocessor.depth_pad_val == 0
    assert "Albu" not in str(cfg.train_pipeline)
    assert cfg.data_root.endswith("/nyu/")


@pytest.mark.parametrize("name", ALL)
def test_config_builds_and_predicts(name):
    cfg = Config.fromfile(str(CONFIGS / name))
    size = name.split("_")[2] if name.startswith("depth_pe_") else "t16"
    width, patch, has_cls = SIZES[size]
    bb = cfg.model.backbone
    assert bb.out_indices == (-1,) and bb.frozen
    assert bb.get("output_cls_token", False) == has_cls
    assert cfg.model.data_preprocessor.size_divisor == patch
    assert cfg.model.decode_head.in_channels == width
    bb.model_overrides = dict(bb.get("model_overrides") or {}, layers=2)
    with DefaultScope.overwrite_default_scope("mmseg"):
        model = MODELS.build(cfg.model).eval()
    h, w = 2 * patch + 3, 3 * patch
    x = torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
    with torch.no_grad():
        out = model.test_step(dict(inputs=[x], data_samples=[SegDataSample(metainfo=dict(ori_shape=(h, w),
                                                                                          img_shape=(h, w)))]))
    assert out[0].pred_depth_map.data.shape == (1, h, w)
