"""The DETA configs: they parse, carry the PE recipe's numbers, take the data root from the environment, and the
small ones build and run."""
import glob
import os

import pytest
import torch
from _deta_tiny import build, make_sample
from mmengine.config import Config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
DETA_CONFIGS = sorted(glob.glob(os.path.join(CONFIGS, "deta_pe_*.py")) +
                      glob.glob(os.path.join(CONFIGS, "demo", "deta_pe_*.py")))
IMAGENET_MEAN = [123.675, 116.28, 103.53]


def _cfg(name):
    return Config.fromfile(os.path.join(CONFIGS, name))


@pytest.mark.parametrize("path", DETA_CONFIGS, ids=os.path.basename)
def test_config_parses_with_consistent_sizes(path):
    cfg = Config.fromfile(path)
    m = cfg.model
    assert m.type == "DETA"
    assert "pe_dense.heads.deta" in cfg.custom_imports.imports
    levels = m.num_feature_levels
    assert m.neck.num_outs == levels
    assert m.encoder.layer_cfg.self_attn_cfg.num_levels == levels
    assert m.decoder.layer_cfg.cross_attn_cfg.num_levels == levels
    assert m.positional_encoding.num_feats * 2 == m.bbox_head.embed_dims == m.neck.out_channels
    sanitize = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "SanitizeBoxes"]
    assert sanitize and sanitize[0]["num_classes"] == m.bbox_head.num_classes


def test_g14_coco_is_the_pe_recipe():
    cfg = _cfg("deta_pe_g14_coco.py")
    m = cfg.model
    assert (m.num_queries, m.num_feature_levels) == (900, 5)
    assert m.encoder.layer_cfg.ffn_cfg.feedforward_channels == 2048
    assert m.decoder.layer_cfg.ffn_cfg.feedforward_channels == 2048
    assert (m.encoder.num_layers, m.decoder.num_layers) == (6, 6)
    b = m.backbone
    assert b.model_name == "PE-Spatial-G14-448" and b.model_overrides["patch_size"] == 16
    assert (b.window_size, tuple(b.global_blocks), b.pos_grid, b.pos_embed_resize) == (24, (12, 24, 36, 49), 24,
                                                                                        "tile")
    assert m.data_preprocessor.mean == IMAGENET_MEAN and m.data_preprocessor.pad_size_divisor == 1728
    assert m.query_selection == dict(pre_nms_topk=1000, nms_iou=0.9)
    s1, s2 = m.train_cfg.stage1, m.train_cfg.stage2
    assert (s1.assigner.neg_iou_thr, s1.assigner.pos_iou_thr, s1.sampler.num, s1.sampler.pos_fraction,
            s1.max_pos_per_gt) == (0.3, 0.7, 256, 0.5, 4)
    assert (s2.assigner.pos_iou_thr, s2.sampler.num, s2.sampler.pos_fraction, s2.max_pos_per_gt) == (0.6, None, 0.25, 4)
    assert m.test_cfg.pre_topk == 10000 and m.test_cfg.nms.iou_threshold == 0.7 and m.test_cfg.max_per_img == 100
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[0].milestones == [10]
    assert cfg.optim_wrapper.optimizer.lr == 5e-5 and cfg.optim_wrapper.clip_grad.max_norm == 0.1
    resize = cfg.test_pipeline[1]
    assert resize.type == "DETRResize" and (resize.size, resize.max_size) == (1696, 1696)


def test_stage_configs_follow_the_release_schedule():
    s1, s2 = _cfg("deta_pe_g14_o365_stage1.py"), _cfg("deta_pe_g14_o365_stage2.py")
    c3, c4 = _cfg("deta_pe_g14_coco.py"), _cfg("deta_pe_g14_coco_1824.py")
    sizes = [c.model.data_preprocessor.pad_size_divisor for c in (s1, s2, c3, c4)]
    assert sizes == [1024, 1536, 1728, 1824]
    assert [c.train_cfg.max_epochs for c in (s1, s2, c3, c4)] == [12, 6, 12, 3]
    assert [c.param_scheduler[0].milestones for c in (s1, s2, c3, c4)] == [[10], [4], [10], [2]]
    assert s1.model.bbox_head.num_classes == s2.model.bbox_head.num_classes == 365
    assert s1.train_dataloader.dataset.type == "Objects365V2Dataset"
    assert c4.optim_wrapper.optimizer.type == "SGD" and c4.model.backbone.drop_path_rate == 0.0
    tta = _cfg("deta_pe_g14_coco_1824_tta.py")
    assert tta.model.num_queries == 2000 and tta.model.test_cfg.nms.type == "soft_nms"
    assert tta.tta_model.type == "DETATTAModel"


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path))
    cfg = _cfg("deta_pe_g14_coco.py")
    assert cfg.data_root == f"{tmp_path}/coco/"
    assert cfg.val_evaluator.ann_file.startswith(str(tmp_path))
    assert _cfg("deta_pe_g14_o365_stage1.py").train_dataloader.dataset.data_root == f"{tmp_path}/objects365/"


def test_t16_config_builds_and_predicts():
    torch.set_num_threads(1)
    cfg = _cfg("deta_pe_t16_coco.py")
    assert cfg.model.data_preprocessor.pad_size_divisor == 1024  # every image padded to 1024 x 1024 (release)
    cfg.model.data_preprocessor.pad_size_divisor = 32  # keep the test small: no padding, 2 of 12 blocks
    cfg.model.backbone.model_overrides = dict(layers=2)
    model = build(cfg.model)
    assert model.num_queries == 900 and len(model.decoder.layers) == 6
    assert model.bbox_head.stage2_assigner.sampler.num == 900  # num=None -> the number of queries
    model.eval()
    data = model.data_preprocessor(dict(inputs=[torch.randint(0, 256, (3, 480, 512), dtype=torch.uint8)],
                                        data_samples=[make_sample((480, 512), [], [])]), False)
    with torch.no_grad():
        pred = model.predict(data["inputs"], data["data_samples"])[0].pred_instances
    assert len(pred) == 100


def test_g14_recipe_backbone_options_build_and_run_at_small_width():
    """The G recipe's backbone settings (patch 16, 24x24 tiled positions, window 24 with global blocks) with the
    tower shrunk to 2 blocks of width 64: the options are accepted and the whole detector runs."""
    torch.set_num_threads(1)
    cfg = _cfg("deta_pe_g14_coco.py")
    cfg.model.backbone.model_overrides = dict(patch_size=16, layers=2, width=64, mlp_width=128)
    cfg.model.backbone.global_blocks = (1,)
    cfg.model.backbone.grad_checkpointing = False
    cfg.model.neck.in_channels = 64
    cfg.model.data_preprocessor.pad_size_divisor = 32
    model = build(cfg.model)
    assert model.backbone.positional_embedding.shape == (24 * 24, 64)
    assert [blk.window for blk in model.backbone.blocks] == [24, 0]
    data = model.data_preprocessor(dict(inputs=[torch.randint(0, 256, (3, 384, 416), dtype=torch.uint8)],
                                        data_samples=[make_sample((384, 416), [[20, 30, 200, 300]], [5])]), True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert all(torch.isfinite(v) for v in losses.values())
