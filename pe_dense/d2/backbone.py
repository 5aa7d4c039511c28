"""Our PE tower as a detectron2 ``Backbone`` with the parameter names of Meta's released ViTDet Mask R-CNN.

``PEViTDetNet`` *is* a :class:`~pe_dense.models.pe.PEVisionTransformer` (same forward, same options) that also
satisfies detectron2's backbone contract: ``forward`` returns ``{"last_feat": (B, W, H/16, W/16)}`` and
``output_shape()`` declares that channel count and stride, which is what ``SimpleFeaturePyramid(net=...)`` reads.
Wrapped in ``SimpleFeaturePyramid`` its keys are ``backbone.net.*`` exactly as in
``mask_rcnn_PEspatial_G_{coco36ep,lvis75ep}.pth`` (PE_FACTS section 10), so those files load with detectron2's own
``DetectionCheckpointer`` and no converter. Two details of the released layout are kept here:

- ``positional_embedding`` is stored ``[1, N, W]`` (ours is ``[N, W]``): state-dict hooks add and remove the leading
  1, so the parameter and the forward stay those of ``PEVisionTransformer``.
- The released files carry derived RoPE tables (``rope_win``, ``rope_glb`` and, per block, the shared
  ``attn.rope``; Meta's ``VisionRotaryEmbeddingFast`` buffers). We keep buffers of the same names and values so the
  keys load strictly, and refuse a file whose tables differ from what this configuration computes (it was built
  for another image size, window or reference grid). The forward uses the tower's own tables.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from torch import nn

from ..models.checkpoint import load_pe_checkpoint, load_state_dict_file
from ..models.configs import get_config
from ..models.pe import PEVisionTransformer
from ..models.rope import rope_table

logger = logging.getLogger(__name__)

# Largest difference tolerated between a loaded RoPE table and ours: both are cos/sin of float32 angles below 65,
# computed in a different order (float32 ulp there is 8e-6), so real mismatches are orders of magnitude larger.
ROPE_TABLE_ATOL = 1e-4


class RopeTables(nn.Module):
    """Meta's RoPE buffers ``freqs_cos``/``freqs_sin`` of an ``n x n`` grid, (n*n, head_dim); storage only."""

    def __init__(self, side: int, head_dim: int, ref_size: int, window: int):
        super().__init__()
        cos, sin = rope_table((side, side), head_dim, mode="window", ref_size=ref_size, num_prefix=0, window=window)
        self.register_buffer("freqs_cos", cos)
        self.register_buffer("freqs_sin", sin)
        self.side = side

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for name in ("freqs_cos", "freqs_sin"):
            theirs, ours = state_dict.get(prefix + name), getattr(self, name)
            if theirs is None or theirs.shape != ours.shape or theirs.device.type == "meta":
                continue  # missing / mis-shaped keys are reported by the loader itself
            diff = (theirs.float() - ours.cpu()).abs().max().item()
            if diff > ROPE_TABLE_ATOL:
                error_msgs.append(
                    f"{prefix}{name} differs from the RoPE table this backbone derives (max |diff| {diff:.3g}): "
                    "the checkpoint was made for another img_size, window_size or rope_ref_size; build "
                    "PEViTDetNet with the settings of the checkpoint's config")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def _pos_embed_to_release(module, state_dict, prefix, local_metadata):
    key = prefix + "positional_embedding"
    if key in state_dict and state_dict[key].ndim == 2:
        state_dict[key] = state_dict[key][None]


def _pos_embed_from_release(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    key = prefix + "positional_embedding"
    if key in state_dict and state_dict[key].ndim == 3 and state_dict[key].shape[0] == 1:
        state_dict[key] = state_dict[key][0]


class PEViTDetNet(PEVisionTransformer, Backbone):
    """PE tower for detectron2's ``SimpleFeaturePyramid``; the defaults are the released G Mask R-CNN's settings.

    Args:
        model_name: a config of ``pe_dense.models.configs.PE_CONFIGS``.
        checkpoint: optional local PE tower file (official or timm layout, patch already converted to
            ``patch_size``: ``tools/convert_checkpoint.py --patch-size 16``); detector checkpoints load with
            ``DetectionCheckpointer`` instead (``train.init_checkpoint``).
        patch_size: 16 in the releases (the patch-14 kernels of L and G resized to 16).
        img_size: the square-padded input side (``SimpleFeaturePyramid(square_pad=...)``); sets the global
            RoPE table of the released layout. Other sizes run (the tower computes its tables per grid).
        window_size, global_blocks: ViTDet windows (negative block indices count from the end).
        rope_ref_size: RoPE reference grid of the ``"window"`` scheme; default = the pretraining grid (32, Meta's
            ``pt_hw_seq_len=32``).
        pos_grid, pos_embed_resize: stored position grid and how it reaches the token grid (release: 32, tiled).
        window_padding: ``"zeros"`` (ViTDet / release) or ``"mask"`` for grids the window does not divide.
        drop_path_rate, grad_checkpointing, norm_eps: as :class:`PEVisionTransformer`.
        model_overrides: config fields to change, e.g. ``dict(layers=2)`` for tests.
        out_feature: name of the returned map (``SimpleFeaturePyramid``'s ``in_feature``).
    """

    def __init__(self, model_name: str = "PE-Spatial-G14-448", checkpoint: Optional[str] = None, *,
                 patch_size: int = 16, img_size: int = 1024, window_size: int = 32,
                 global_blocks: Sequence[int] = (12, 24, 36, 49), rope_ref_size: Optional[int] = None,
                 pos_grid: Optional[int] = None, pos_embed_resize: str = "tile", window_padding: str = "zeros",
                 drop_path_rate: float = 0.0, grad_checkpointing: bool = False, norm_eps: float = 1e-5,
                 model_overrides: Optional[dict] = None, out_feature: str = "last_feat"):
        cfg = get_config(model_name).replace(patch_size=patch_size, **(model_overrides or {}))
        super().__init__(cfg, rope_mode="window", rope_ref_size=rope_ref_size, pos_embed_resize=pos_embed_resize,
                         pos_grid=pos_grid, window_size=window_size, global_blocks=global_blocks,
                         window_padding=window_padding, norm_eps=norm_eps, drop_path_rate=drop_path_rate,
                         grad_checkpointing=grad_checkpointing)
        self.img_size = img_size
        self._out_features = [out_feature]
        self._out_feature_channels = {out_feature: cfg.width}
        self._out_feature_strides = {out_feature: cfg.patch_size}
        head_dim = cfg.width // cfg.heads
        if any(blk.window for blk in self.blocks):
            self.rope_win = RopeTables(window_size, head_dim, self.rope_ref_size, window_size)
        self.rope_glb = RopeTables(img_size // cfg.patch_size, head_dim, self.rope_ref_size, 0)
        for blk in self.blocks:
            blk.attn.rope = self.rope_win if blk.window else self.rope_glb  # shared, as in the release
        self.register_state_dict_post_hook(_pos_embed_to_release)
        self.register_load_state_dict_pre_hook(_pos_embed_from_release)
        if checkpoint:
            self.load_pe_weights(checkpoint)

    def load_pe_weights(self, path: str) -> None:
        """Load a PE tower file (no RoPE tables, ``[N, W]`` position embedding) strictly."""
        own = self.state_dict()
        sd = {k: v for k, v in load_state_dict_file(path).items()  # a Core file's pool/projection: not used here
              if k in own or k.split(".")[0] not in ("attn_pool", "proj", "ln_post")}
        if sd.get("positional_embedding") is not None and sd["positional_embedding"].ndim == 2:
            sd["positional_embedding"] = sd["positional_embedding"][None]
        sd.update({k: v for k, v in own.items() if k.startswith("rope_") or ".attn.rope." in k})
        load_pe_checkpoint(self, sd, strict=True)
        logger.info("loaded PE weights from %s", path)

    @property
    def size_divisibility(self) -> int:
        return self.patch_size

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": self.patch_size}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
                for name in self._out_features}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Normalised images (B, 3, H, W), H and W multiples of the patch -> ``{out_feature: (B, W, h, w)}``."""
        return {self._out_features[0]: self.forward_intermediates(x, indices=[-1], output_fmt="NCHW")[0]}


def get_pe_lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 50) -> float:
    """Layer-wise lr decay for detectron2's ``get_default_optimizer_params(lr_factor_func=...)`` on full parameter
    names (``backbone.net.*``): embeddings get ``rate ** (num_layers + 1)``, block i ``rate ** (num_layers - i)``,
    everything else (pyramid, heads) 1. The release's ``get_vit_lr_decay_rate_pev1`` rule, which detectron2's own
    ``get_vit_lr_decay_rate`` cannot express (it looks for timm names: ``.blocks.``, ``.pos_embed``)."""
    layer_id = num_layers + 1
    if name.startswith("backbone.net."):
        part = name[len("backbone.net."):]
        if part.split(".")[0] in ("conv1", "positional_embedding", "class_embedding", "ln_pre"):
            layer_id = 0
        elif part.startswith("transformer.resblocks."):
            layer_id = int(part.split(".")[2]) + 1
    return lr_decay_rate ** (num_layers + 1 - layer_id)
