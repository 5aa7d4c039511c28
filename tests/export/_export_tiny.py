"""Shared pieces of the export tests: a 2-block random-init T at 64x96 and its exporter."""
import torch

MODEL = "PE-Spatial-T16-512"
SIZE = (64, 96)
LAYERS = [0, 1]
OVERRIDES = {"layers": 2}


def reference_extractor(fp16=False):
    """The PyTorch model the artefacts were exported from (same seed, so the same random weights)."""
    from pe_dense.export.feature_extractor import build_feature_extractor

    torch.manual_seed(0)
    return build_feature_extractor(MODEL, LAYERS, SIZE, fp16=fp16, model_overrides=OVERRIDES)


def export(out_dir, **kw):
    from pe_dense.export.feature_extractor import export_backbone

    torch.manual_seed(0)
    return export_backbone(MODEL, LAYERS, SIZE, str(out_dir), model_overrides=OVERRIDES, **kw)
