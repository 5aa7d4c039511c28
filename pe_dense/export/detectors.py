"""Export any of our detector configs: build the mmdet model from its config, load the checkpoint (strictly) and
hand it to the wrapper of its kind (Mask R-CNN here, DETA in :mod:`.deta`)."""
from __future__ import annotations

import logging
from typing import Optional, Tuple

logger = logging.getLogger(__name__)

# model type in the config -> (module, function) of its exporter; imported on use
EXPORTERS = {"MaskRCNN": ("pe_dense.export.mask_rcnn", "export_mask_rcnn"),
             "DETA": ("pe_dense.export.deta", "export_deta")}


def build_detector(config_path: str, checkpoint: Optional[str], cfg_options: Optional[dict] = None):
    """(model in eval mode, config) of a detector config, weights from ``checkpoint`` (our mmengine checkpoints;
    ``None``: random init with a warning). A checkpoint of another model is refused, naming the fix."""
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from pe_dense.engine.runner import build_config, check_checkpoint_fits

    cfg = build_config(config_path, cfg_options)
    init_default_scope(cfg.get("default_scope", "mmdet"))
    from mmdet.registry import MODELS

    kind = cfg.model.get("type")
    if kind not in EXPORTERS:
        raise ValueError(f"{config_path} builds a {kind!r}; the detector export knows {sorted(EXPORTERS)}: for the "
                         "bare backbone use tools/export.py --model-name PE-Spatial-... --layers ...")
    cfg.model.backbone.pop("checkpoint", None)  # the detector checkpoint holds the backbone weights
    model = MODELS.build(cfg.model)
    mm_logger = MMLogger.get_current_instance()
    level = mm_logger.level
    mm_logger.setLevel(logging.WARNING)  # init_weights/load_checkpoint log every parameter at INFO
    try:
        if checkpoint:
            check_checkpoint_fits(model, checkpoint)
            meta = load_checkpoint(model, checkpoint, map_location="cpu", strict=True).get("meta", {})
            if meta.get("dataset_meta"):
                model.dataset_meta = meta["dataset_meta"]
        else:
            model.init_weights()
    finally:
        mm_logger.setLevel(level)
    if not checkpoint:
        logger.warning("no checkpoint given: exporting RANDOM weights of %s (pass a trained checkpoint)", config_path)
    return model.eval(), cfg


def export_detector(config_path: str, checkpoint: Optional[str], size: Tuple[int, int], out_dir: str, *,
                    fmt: str = "onnx", batch="dynamic", fp16: bool = False, opset: Optional[int] = None,
                    orig_size: bool = False, max_dets: int = 100, cfg_options: Optional[dict] = None,
                    name: Optional[str] = None) -> str:
    """Build, export and check a detector config; returns the artefact path (metadata JSON beside it)."""
    import importlib
    import os

    from pe_dense.features.store import sha256_file

    model, cfg = build_detector(config_path, checkpoint, cfg_options)
    module, func = EXPORTERS[cfg.model.type]
    exporter = getattr(importlib.import_module(module), func)
    name = name or "{}_{}x{}_{}".format(os.path.splitext(os.path.basename(config_path))[0], size[0], size[1],
                                        "fp16" if fp16 else "fp32")
    # provenance in the artefact's metadata: which weights and which config made it
    source = {"config": os.path.basename(config_path),
              "weights": ("sha256:" + sha256_file(checkpoint)) if checkpoint else "random-init (no checkpoint given)"}
    return exporter(model, cfg, tuple(size), out_dir, fmt=fmt, batch=batch, fp16=fp16, opset=opset,
                    orig_size=orig_size, max_dets=max_dets, name=name, source=source)
