"""The bare PE-Spatial backbone as a fixed-size feature extractor: images in, one (B, W, h, w) map per layer out.

This is what a robotics perception stack most often wants from PE-Spatial. Inputs and outputs stay float32 in
every precision, so the runtime side never changes with ``fp16``.
"""
from __future__ import annotations

import copy
import logging
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from pe_dense.models.blocks import PEAttention
from pe_dense.models.pe import PEVisionTransformer

from .baked import bake_for_size

logger = logging.getLogger(__name__)


class Fp32Island(nn.Module):
    """Runs a submodule in float32 inside a half-precision model (casts in, computes, casts back).

    fp16 LayerNorm statistics and attention logits overflow or lose the softmax (lightly-train #751, rf-detr
    #176), so LayerNorms and the whole attention (projections, RoPE, logits, softmax) stay float32; the MLPs
    and the patch embedding, most of the FLOPs, run in fp16.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.float()

    def forward(self, x, *args, **kwargs):
        return self.inner(x.float(), *args, **kwargs).to(x.dtype)


def to_fp16_with_fp32_islands(model: nn.Module) -> nn.Module:
    """Half precision in place except LayerNorms and attention, which become :class:`Fp32Island`s."""
    model.half()
    targets = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, (nn.LayerNorm, PEAttention))]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Fp32Island(mod))
    return model


class FeatureExtractor(nn.Module):
    """(B, 3, H, W) normalised images -> tuple of (B, W, H/p, W/p) maps after the chosen blocks (0-based)."""

    def __init__(self, model: PEVisionTransformer, layers: Sequence[int], size: Tuple[int, int],
                 fp16: bool = False):
        super().__init__()
        n = model.cfg.layers
        bad = [i for i in layers if not -n <= i < n]
        if bad or not layers:
            raise ValueError(f"layers {list(layers)} not valid for the {n}-block {model.cfg.name}: give block "
                             f"indices in [0, {n - 1}] (negatives count from the end)")
        self.layers = [int(i) % n for i in layers]
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers {list(layers)} name the same block twice ({self.layers}): list each block once")
        self.size = tuple(int(s) for s in size)
        self.dtype = torch.float16 if fp16 else torch.float32
        model = copy.deepcopy(model).eval()  # the caller's model stays as it was
        if fp16:
            model = to_fp16_with_fp32_islands(model)
        self.model = bake_for_size(model, self.size, copy_model=False)

    @property
    def output_names(self):
        return [f"features_block{i}" for i in self.layers]

    def forward(self, images: torch.Tensor):
        maps = self.model.forward_intermediates(images.to(self.dtype), indices=self.layers, output_fmt="NCHW")
        return tuple(m.float() for m in maps)


def build_feature_extractor(model_name: str, layers: Sequence[int], size: Tuple[int, int],
                            checkpoint: Optional[str] = None, fp16: bool = False,
                            model_overrides: Optional[dict] = None) -> FeatureExtractor:
    """Named PE config (+ optional weights; random init with a warning) wrapped for export.

    ``model_overrides`` go to ``PEVisionTransformer.from_config`` (e.g. ``{"layers": 2}`` for a short test tower).
    """
    model = PEVisionTransformer.from_config(model_name, checkpoint=checkpoint, **(model_overrides or {}))
    if checkpoint is None:
        logger.warning("no checkpoint given: exporting RANDOM weights of %s (pass --checkpoint PATH for real "
                       "features)", model_name)
    return FeatureExtractor(model, layers, size, fp16=fp16)


def feature_metadata(fe: FeatureExtractor, model_name: str, checkpoint: Optional[str]) -> dict:
    """What a runtime needs to feed the graph and read its outputs (pe_dense.deploy reads exactly this)."""
    from pe_dense.data.images import PE_MEAN, PE_STD
    from pe_dense.features.store import sha256_file

    p = fe.model.patch_size
    return {
        "task": "features",
        "model_name": model_name,
        "weights": ("sha256:" + sha256_file(checkpoint)) if checkpoint else "random-init (no checkpoint given)",
        "input_size": list(fe.size),
        "dtype": "float16 (LayerNorm and attention in float32)" if fe.dtype == torch.float16 else "float32",
        "io_dtype": "float32",
        "normalisation": {"scale": 1 / 255, "mean": list(PE_MEAN), "std": list(PE_STD), "channels": "RGB",
                          "layout": "NCHW", "formula": "(pixel * scale - mean) / std"},
        "resize": {"mode": "stretch", "interpolation": "bilinear", "align_corners": False, "antialias": False,
                   "same_as": "pe_dense.data.images.preprocess"},
        "layers": fe.layers,
        "outputs": {name: {"shape": ["batch", fe.model.embed_dim, fe.size[0] // p, fe.size[1] // p],
                           "stride": p, "block": i} for name, i in zip(fe.output_names, fe.layers)},
        "coordinate_frame": "feature cell (i, j) covers input pixels [i*stride, (i+1)*stride) of the resized image",
    }


def export_backbone(model_name: str, layers: Sequence[int], size: Tuple[int, int], out_dir: str, *,
                    fmt: str = "onnx", batch="dynamic", fp16: bool = False, opset: Optional[int] = None,
                    checkpoint: Optional[str] = None, name: Optional[str] = None,
                    model_overrides: Optional[dict] = None) -> str:
    """Build, export and check the feature extractor; returns the artefact path (metadata JSON beside it)."""
    from .artefact import DEFAULT_OPSET, export_artefact

    fe = build_feature_extractor(model_name, layers, size, checkpoint=checkpoint, fp16=fp16,
                                 model_overrides=model_overrides)
    name = name or f"{model_name}_{size[0]}x{size[1]}_{'fp16' if fp16 else 'fp32'}"
    return export_artefact(fe, out_dir, name, size=fe.size, output_names=fe.output_names,
                           metadata=feature_metadata(fe, model_name, checkpoint), fmt=fmt, batch=batch,
                           opset=opset or DEFAULT_OPSET)
