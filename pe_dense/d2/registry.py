"""``BACKBONE_REGISTRY`` entry for detectron2's yacs configs (``MODEL.BACKBONE.NAME = "build_pe_vitdet_backbone"``).

LazyConfigs (``configs/d2/``) build ``SimpleFeaturePyramid(net=PEViTDetNet(...))`` directly; this builder gives
the same module to code that still uses ``get_cfg()`` + ``build_model``. ``add_pe_config(cfg)`` adds the keys,
whose defaults are the released G Mask R-CNN's.
"""
from __future__ import annotations

from detectron2.config import CfgNode as CN
from detectron2.modeling import BACKBONE_REGISTRY, SimpleFeaturePyramid
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from .backbone import PEViTDetNet


def add_pe_config(cfg: CN) -> CN:
    """Add ``MODEL.PE`` (tower) and ``MODEL.PE_SFP`` (pyramid) to a detectron2 yacs config, in place."""
    cfg.MODEL.PE = CN()
    cfg.MODEL.PE.NAME = "PE-Spatial-G14-448"
    cfg.MODEL.PE.CHECKPOINT = ""        # local PE tower file (patch already converted), or "" for none
    cfg.MODEL.PE.PATCH_SIZE = 16
    cfg.MODEL.PE.IMG_SIZE = 1024        # square padding side
    cfg.MODEL.PE.WINDOW_SIZE = 32
    cfg.MODEL.PE.GLOBAL_BLOCKS = [12, 24, 36, 49]
    cfg.MODEL.PE.DROP_PATH_RATE = 0.5
    cfg.MODEL.PE.GRAD_CHECKPOINTING = False
    cfg.MODEL.PE.LAYERS = 0             # 0 = the config's depth; fewer for tests
    cfg.MODEL.PE_SFP = CN()
    cfg.MODEL.PE_SFP.OUT_CHANNELS = 256
    cfg.MODEL.PE_SFP.SCALE_FACTORS = [4.0, 2.0, 1.0, 0.5]
    cfg.MODEL.PE_SFP.NORM = "LN"
    return cfg


@BACKBONE_REGISTRY.register()
def build_pe_vitdet_backbone(cfg: CN, input_shape=None) -> SimpleFeaturePyramid:
    """ViTDet's simple feature pyramid (p2-p6, max-pool top level) on a PE tower, from ``add_pe_config`` keys."""
    if "PE" not in cfg.MODEL:
        raise KeyError("cfg.MODEL.PE is missing: call pe_dense.d2.add_pe_config(cfg) before merging your yacs file")
    pe = cfg.MODEL.PE
    net = PEViTDetNet(pe.NAME, pe.CHECKPOINT or None, patch_size=pe.PATCH_SIZE, img_size=pe.IMG_SIZE,
                      window_size=pe.WINDOW_SIZE, global_blocks=tuple(pe.GLOBAL_BLOCKS),
                      drop_path_rate=pe.DROP_PATH_RATE, grad_checkpointing=pe.GRAD_CHECKPOINTING,
                      model_overrides=dict(layers=pe.LAYERS) if pe.LAYERS else None)
    sfp = cfg.MODEL.PE_SFP
    return SimpleFeaturePyramid(net, "last_feat", sfp.OUT_CHANNELS, tuple(sfp.SCALE_FACTORS),
                                top_block=LastLevelMaxPool(), norm=sfp.NORM, square_pad=pe.IMG_SIZE)
