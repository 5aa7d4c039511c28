"""Demo data (the bundled photos) and random-weight checkpoints of the demo configs, shared by the API tests."""
import os

import pytest
import torch

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
DETA = os.path.join(REPO, "configs", "demo", "deta_pe_t16_demo.py")
MASK_RCNN = os.path.join(REPO, "configs", "demo", "mask_rcnn_pe_t16_demo.py")
SEG = os.path.join(REPO, "configs", "demo", "seg_probe_pe_t16_voc_demo.py")
DEPTH = os.path.join(REPO, "configs", "demo", "depth_pe_t16_demo.py")
FAST_MASK_RCNN = {"model.test_cfg.rcnn.max_per_img": 20}  # fewer masks to paste on a shared CPU


@pytest.fixture(scope="session")
def demo_coco(tmp_path_factory):
    from pe_dense.data.demo import build_demo_coco

    return build_demo_coco(str(tmp_path_factory.mktemp("demo_coco")))


def random_checkpoint(config: str, options: dict, path: str, seed: int = 0) -> str:
    """Build the config's model with random weights under ``seed`` and save it as an mmengine checkpoint."""
    from mmengine.registry import init_default_scope

    from pe_dense.engine.runner import build_config

    cfg = build_config(config, options)
    scope = cfg.get("default_scope", "mmdet")
    init_default_scope(scope)
    registry = __import__(f"{scope}.registry", fromlist=["MODELS"]).MODELS
    torch.manual_seed(seed)
    model = registry.build(cfg.model)  # torch's default init (init_weights would zero DETA's box deltas)
    # ... except mmdet's DeformableDETR.level_embed, made with torch.Tensor(n, c) and set only by init_weights:
    # left alone it holds whatever memory it was given, sometimes NaN (seen: NaN scores on a fresh clone)
    if hasattr(model, "level_embed"):
        torch.nn.init.normal_(model.level_embed)
    assert all(p.isfinite().all() for p in model.parameters()), f"{config}: non-finite random weights"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    return path


@pytest.fixture(scope="session")
def deta_ckpt(demo_coco, tmp_path_factory):
    return random_checkpoint(DETA, {"data_root": demo_coco + "/"}, str(tmp_path_factory.mktemp("ck") / "deta.pth"))


@pytest.fixture(scope="session")
def mask_rcnn_ckpt(demo_coco, tmp_path_factory):
    return random_checkpoint(MASK_RCNN, {"data_root": demo_coco + "/"},
                             str(tmp_path_factory.mktemp("ck") / "mask_rcnn.pth"))


@pytest.fixture(scope="session")
def deta(demo_coco, deta_ckpt):
    from pe_dense.apis import Detector

    return Detector(DETA, deta_ckpt, cfg_options={"data_root": demo_coco + "/"})


@pytest.fixture(scope="session")
def demo_photos(demo_coco):
    folder = os.path.join(demo_coco, "images")
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
