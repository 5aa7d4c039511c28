"""The released-detector configs compute what Meta's code computes (facts from running perception_models 3e352cc
against our models, recorded in issue 8): the options they resolve to, checked on built modules and on a real photo.

Released recipes: Mask R-CNN G (COCO, LVIS; detectron2) and the DETA G stages (the release is the 1824 stage).
Our own T/S/B/L configs keep PE's defaults; the last tests check they did not inherit the release's choices.
"""
import os

import numpy as np
import pe_dense.heads.deta  # noqa: F401  (registers DETRResize)
import pe_dense.heads.mask_rcnn  # noqa: F401
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import pe_dense.mm  # noqa: F401

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
MASK_RCNN_RELEASED = ["mask_rcnn_pe_g14_coco.py", "mask_rcnn_pe_g14_lvis.py"]
DETA_RELEASED = ["deta_pe_g14_o365_stage1.py", "deta_pe_g14_o365_stage2.py", "deta_pe_g14_coco.py",
                 "deta_pe_g14_coco_1824.py", "deta_pe_g14_coco_1824_tta.py"]
OURS = {"mask_rcnn_pe_t16_coco.py": "mask", "mask_rcnn_pe_s16_coco.py": "mask", "mask_rcnn_pe_b16_coco.py": "mask",
        "mask_rcnn_pe_l14_coco.py": "mask", "deta_pe_t16_coco.py": "deta", "deta_pe_s16_coco.py": "deta",
        "deta_pe_b16_coco.py": "deta", "deta_pe_l14_coco.py": "deta"}


def _cfg(name):
    return Config.fromfile(os.path.join(CONFIGS, name))


def _backbone(cfg, layers=2):
    """The config's backbone, cut to ``layers`` blocks (G is too big to build whole in a test)."""
    from mmdet.registry import MODELS
    b = cfg.model.backbone.copy()
    b["model_overrides"] = dict(b.get("model_overrides") or {}, layers=layers)
    b["global_blocks"] = ()
    return MODELS.build(b)


def _hand_window_angles(y, x, n, ref, head_dim):
    """The detection code's RoPE angle of token (y, x): positions arange(n) / n * ref + 1, [x | y] halves."""
    f = 10000.0 ** (-torch.arange(0, head_dim // 2, 2, dtype=torch.float64) / (head_dim // 2))
    px, py = (x % n) / n * ref + 1, (y % n) / n * ref + 1
    return torch.cat([(px * f).repeat_interleave(2), (py * f).repeat_interleave(2)])


@pytest.mark.parametrize("name,grid,window,ref", [("mask_rcnn_pe_g14_coco.py", 64, 32, 32),
                                                  ("deta_pe_g14_coco_1824.py", 114, 24, 16)])
def test_released_backbones_resolve_to_the_release(name, grid, window, ref):
    init_default_scope("mmdet")
    m = _backbone(_cfg(name))
    assert m.patch_size == 16 and m.cfg.pretrain_grid == 32
    assert m.rope_mode == "window" and m.rope_ref_size == ref  # Mask R-CNN: 32 = pretraining grid, not 448 // 16
    assert all(blk.ln_1.eps == blk.ln_2.eps == 1e-5 for blk in m.blocks)  # the release's eps 1e-6 is never used
    assert m.ln_pre.eps == 1e-5
    assert m.pos_embed_resize == "tile" and m.positional_embedding.shape[0] == m.pos_grid ** 2
    assert m.pos_grid == (32 if name.startswith("mask") else 24)
    assert all(blk.window_padding == "zeros" for blk in m.blocks)
    head_dim = m.cfg.width // m.cfg.heads  # 96
    for win in (window, 0):  # windowed blocks, global blocks
        n = win or grid
        table = m._make_rope((grid, grid), win, "cpu")  # (N, head_dim / 2, (cos, sin))
        for y, x in [(0, 0), (5, 17), (grid - 1, grid - 2)]:
            want = _hand_window_angles(y, x, n, ref, head_dim).float()
            got = table[y * grid + x]
            torch.testing.assert_close(got[:, 0], want[::2].cos(), atol=2e-6, rtol=0)
            torch.testing.assert_close(got[:, 1], want[::2].sin(), atol=2e-6, rtol=0)


def test_patch_override_keeps_the_pretraining_grid():
    """A patch-14 model run at patch 16 keeps its 32x32 position grid and RoPE reference (the checkpoint's)."""
    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer
    for name in ("PE-Spatial-L14-448", "PE-Spatial-G14-448"):
        cfg = get_config(name).replace(patch_size=16, layers=1)
        assert cfg.grid_size == 28 and cfg.pretrain_grid == 32
    m = PEVisionTransformer.from_config("PE-Spatial-L14-448", patch_size=16, layers=1, rope_mode="timm")
    assert m.rope_ref_size == 32 and m.pos_grid == 32
    assert m.positional_embedding.shape == (1 + 32 * 32, 1024)
    cos = m._make_rope((28, 28), 0, "cpu")[:, :, 0]  # timm mode: positions rescaled to the 32 grid
    f0 = 1.0  # first frequency
    x = (27 + 1) / 28 * 32  # last column, with the cls offset
    torch.testing.assert_close(cos[1 + 27, 0], torch.tensor(np.cos(x * f0), dtype=torch.float32))


def _photo(tmp_path, size=(500, 333)):
    import skimage.data
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(skimage.data.astronaut()).resize(size, Image.BILINEAR).save(path, quality=95)
    return path


@pytest.mark.parametrize("name", MASK_RCNN_RELEASED)
def test_mask_rcnn_release_normalises_with_127_and_pads_zeros_after(name):
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    cfg = _cfg(name)
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert not any(t["type"] == "Pad" for t in pipeline)
    assert pipeline[0]["imdecode_backend"] == "pillow" and pipeline[1]["backend"] == "pillow"  # = detectron2's input
    pre = MODELS.build(cfg.model.data_preprocessor)
    img = torch.randint(0, 256, (3, 700, 1024), dtype=torch.uint8)
    out = pre(dict(inputs=[img], data_samples=None), training=False)["inputs"]
    assert out.shape == (1, 3, 1024, 1024)
    want = (img.flip(0).float() - 127.0) / 127.0  # BGR -> RGB, mean = std = 127
    torch.testing.assert_close(out[0, :, :700], want)
    assert torch.all(out[0, :, 700:] == 0)  # padding = the mean, exactly


def test_mask_rcnn_release_test_input_is_pil_resized_like_detectron2(tmp_path):
    from mmcv.transforms import Compose
    init_default_scope("mmdet")
    pipeline = _cfg("mask_rcnn_pe_g14_coco.py").test_dataloader.dataset.pipeline
    path = _photo(tmp_path, (500, 333))
    out = Compose(pipeline[:2])(dict(img_path=path, img_id=0))
    # ResizeShortestEdge(1024, 1024): scale 1024 / 500, sides rounded: 500 x 333 -> 1024 x int(681.98 + 0.5) = 682
    pil = np.asarray(Image.open(path).convert("RGB").resize((1024, 682), Image.BILINEAR))
    np.testing.assert_array_equal(out["img"][..., ::-1], pil)


def test_mask_rcnn_release_schedules_and_weight_decay():
    coco, lvis = _cfg("mask_rcnn_pe_g14_coco.py"), _cfg("mask_rcnn_pe_g14_lvis.py")
    assert coco.train_cfg.max_iters == 184_375 * 36 // 100 == 66_375
    assert coco.param_scheduler[1].milestones == [163_889 * 36 // 100, 177_546 * 36 // 100] == [59_000, 63_916]
    assert lvis.train_cfg.max_iters == 184_375 * 3 // 4 == 138_281
    assert lvis.param_scheduler[1].milestones == [163_889 * 3 // 4, 177_546 * 3 // 4]
    for cfg in (coco, lvis):  # weight_decay_norm=None, overrides={}: every parameter decays
        pw = cfg.optim_wrapper.paramwise_cfg
        assert pw == dict(layer_decay_rate=0.9)
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.1


def test_deta_release_resizes_like_pil_with_the_detr_rule(tmp_path):
    from mmcv.transforms import Compose
    init_default_scope("mmdet")
    cfg = _cfg("deta_pe_g14_coco_1824.py")
    assert cfg.model.test_cfg.clip_boxes is False
    path = _photo(tmp_path, (500, 333))
    pipe = Compose([t for t in cfg.test_pipeline if t["type"] in ("CheckedLoadImageFromFile", "DETRResize")])
    out = pipe(dict(img_path=path, img_id=0))
    # DETR rule by hand: short side 1792 would make the long side 2691 > 1792, so short = round(1792 * 333 / 500)
    # = 1193 and long = int(1193 * 500 / 333) = 1791 (mmdet's Resize rounds to 1792).
    assert out["img"].shape[:2] == (1193, 1791)
    pil = np.asarray(Image.open(path).convert("RGB").resize((1791, 1193), Image.BILINEAR))
    np.testing.assert_array_equal(out["img"][..., ::-1], pil)  # BGR in mmcv
    np.testing.assert_allclose(out["scale_factor"], (1791 / 500, 1193 / 333))


@pytest.mark.parametrize("name", DETA_RELEASED)
def test_deta_release_configs_share_the_release_test_path(name):
    cfg = _cfg(name)
    types = [t["type"] for t in cfg.test_pipeline]
    assert types[:2] == ["CheckedLoadImageFromFile", "DETRResize"]
    assert cfg.test_pipeline[0]["imdecode_backend"] == "pillow"
    assert cfg.model.test_cfg.clip_boxes is False
    b = cfg.model.backbone
    assert (b.rope_mode, b.rope_ref_size, b.window_padding, b.get("norm_eps", 1e-5)) == ("window", 16, "zeros", 1e-5)


@pytest.mark.parametrize("name,kind", sorted(OURS.items()))
def test_our_size_configs_keep_pe_defaults(name, kind):
    cfg = _cfg(name)
    m = cfg.model
    assert m.data_preprocessor.mean == m.data_preprocessor.std == [127.5] * 3  # PE's own normalisation
    assert m.backbone.get("norm_eps", 1e-5) == 1e-5
    assert m.backbone.get("rope_ref_size") in (None, 32)
    if kind == "deta":
        assert m.test_cfg.clip_boxes is True and m.backbone.window_padding == "mask"
    else:
        assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.0  # ViTDet's exemptions (no release to match)
