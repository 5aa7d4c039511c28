"""The ADE20k probe configs: each size builds the intended frozen backbone; the protocol's numbers; the lr curve."""
import os

import pytest
import torch

pytest.importorskip("mmseg")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CONFIGS = os.path.join(ROOT, "configs")
# (tag, model, width, patch)
SIZES = [("t16", "PE-Spatial-T16-512", 192, 16), ("s16", "PE-Spatial-S16-512", 384, 16),
         ("b16", "PE-Spatial-B16-512", 768, 16), ("l14", "PE-Spatial-L14-448", 1024, 14),
         ("g14", "PE-Spatial-G14-448", 1536, 14)]
CASES = [(f"seg_probe_pe_{tag}_ade20k{suffix}.py", model, width, patch, suffix == "_ms")
         for tag, model, width, patch in SIZES for suffix in ("", "_ms")]


def cfg_of(name, options=None, **kw):
    from pe_dense.engine.runner import build_config
    return build_config(os.path.join(CONFIGS, name), options, **kw)


@pytest.mark.parametrize("name,model_name,width,patch,ms", CASES, ids=[c[0] for c in CASES])
def test_size_config_builds_the_intended_frozen_backbone(name, model_name, width, patch, ms):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    cfg = cfg_of(name)
    assert cfg.default_scope == "mmseg" and "pe_dense.heads.seg" in cfg.custom_imports.imports
    bb, head = cfg.model.backbone, cfg.model.decode_head
    layers = (-4, -3, -2, -1) if ms else (-1,)
    assert (bb.type, bb.model_name, tuple(bb.out_indices), bb.frozen) == ("PEBackbone", model_name, layers, True)
    assert (head.type, head.in_channels, head.patch_size, head.num_classes) == ("LinearProbeHead", width, patch, 150)
    assert tuple(head.in_index) == tuple(range(len(layers))) and head.probe == "bn_linear"
    assert bb.output_cls_token is False and head.use_cls_token is False

    depth = 4 if ms else 1  # a few blocks of the real width: the whole G would take minutes to build
    cfg.model.backbone.model_overrides = dict(layers=depth)
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    backbone = model.backbone
    assert backbone.cfg.name == model_name and backbone.cfg.width == width and backbone.patch_size == patch
    assert backbone.out_indices == tuple(i % depth for i in layers)
    assert not any(p.requires_grad for p in backbone.parameters())
    model.train()
    assert not backbone.training and model.decode_head.training
    assert model.decode_head.bn.num_features == len(layers) * width


def test_protocol_numbers():
    cfg = cfg_of("seg_probe_pe_b16_ade20k.py")
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ("AdamW", 1e-3, 1e-4)
    assert cfg.train_cfg.max_iters == 40_000 and cfg.train_cfg.type == "IterBasedTrainLoop"
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.model.test_cfg == dict(mode="slide", crop_size=(512, 512), stride=(341, 341))
    steps = {s["type"]: s for s in cfg.train_pipeline}
    assert steps["RandomResize"]["scale"] == (2048, 512) and steps["RandomResize"]["ratio_range"] == (0.5, 2.0)
    assert steps["RandomCrop"]["crop_size"] == (512, 512) and steps["RandomCrop"]["cat_max_ratio"] == 0.75
    assert steps["RandomFlip"]["prob"] == 0.5 and "PhotoMetricDistortion" in steps
    assert cfg.model.data_preprocessor.size == (512, 512) and cfg.model.data_preprocessor.mean == [127.5] * 3
    ds = cfg.train_dataloader.dataset
    assert ds.type == "ADE20KDataset" and ds.data_prefix.seg_map_path == "annotations/training"
    assert cfg.val_evaluator == dict(type="IoUMetric", iou_metrics=["mIoU"])
    tta = cfg.tta_pipeline[1]["transforms"]
    assert [t["scale"][1] for t in tta[0]] == [512, 676, 886, 1167, 1536]
    assert [t["prob"] for t in tta[1]] == [0.0, 1.0] and cfg.tta_model.type == "SegTTAModel"
    ms = cfg_of("seg_probe_pe_b16_ade20k_ms.py", tta=True)
    assert ms.model.type == "SegTTAModel" and ms.test_dataloader.dataset.pipeline[1]["type"] == "TestTimeAug"


def test_data_root_from_the_environment(monkeypatch):
    monkeypatch.setenv("PE_DENSE_DATA", "/datasets")
    cfg = cfg_of("seg_probe_pe_t16_ade20k.py")
    assert cfg.train_dataloader.dataset.data_root == "/datasets/ade/ADEChallengeData2016/"
    cfg = cfg_of("seg_probe_pe_t16_ade20k.py", {"data_root": "/elsewhere/ADE"})
    assert cfg.val_dataloader.dataset.data_root == "/elsewhere/ADE/"


def test_lr_is_linear_warmup_times_poly_as_dinov2():
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = cfg_of("seg_probe_pe_t16_ade20k.py")
    base_lr, total, warm = 1e-3, 40_000, 1_500
    wrapper = OptimWrapper(torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=base_lr))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper)) for s in cfg.param_scheduler]
    checks = {0: None, 1: None, 750: None, 1499: None, 1500: None, 20_000: None, 39_999: None}
    for i in range(total):
        if i in checks:
            checks[i] = wrapper.optimizer.param_groups[0]["lr"]
        for s in schedulers:
            s.step()
    for i, lr in checks.items():
        warmup = 1e-6 + (1 - 1e-6) * i / warm if i < warm else 1.0
        assert lr == pytest.approx(base_lr * warmup * (1 - i / total), rel=1e-6, abs=1e-15), i


def test_engine_hooks_and_our_transforms_resolve_in_the_mmseg_scope():
    import pe_dense.heads.seg  # noqa: F401
    from mmengine.registry import HOOKS, TRANSFORMS, init_default_scope
    from mmengine.visualization import Visualizer

    import pe_dense.engine  # noqa: F401

    cfg = cfg_of("seg_probe_pe_t16_ade20k.py")
    init_default_scope("mmseg")
    assert [type(HOOKS.build(h)).__name__ for h in cfg.custom_hooks] == ["PreflightHook", "IterationSeedHook"]
    Visualizer.get_instance("seg_cfg_test")
    assert type(HOOKS.build(dict(cfg.default_hooks.visualization))).__name__ == "SegOverlayHook"
    built = [type(TRANSFORMS.build(dict(step))).__name__ for step in cfg.train_pipeline + cfg.test_pipeline]
    assert built[0] == built[7] == "CheckedLoadImageFromFile" and built[1] == built[9] == "CheckedLoadSegAnnotations"
