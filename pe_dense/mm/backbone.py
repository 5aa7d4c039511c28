"""PE vision tower as an mmdet/mmseg backbone: multi-layer NCHW outputs, freezing, checkpoint loading."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Optional, Sequence, Tuple

import torch

from ..models.checkpoint import load_pe_checkpoint, load_state_dict_file
from ..models.configs import get_config
from ..models.pe import PEVisionTransformer

# PE normalises RGB in [0, 1] with mean = std = 0.5, i.e. pixels in [0, 255] with mean = std = 127.5.
PE_DATA_PREPROCESSOR = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], bgr_to_rgb=True)


class PEBackbone(PEVisionTransformer):
    """Backbone wrapper: returns ``(B, W, h, w)`` maps after the blocks in ``out_indices``.

    Parameter names are the official ones, so ``backbone.*`` keys in our detector checkpoints are the released
    PE names with a prefix. Weights load in ``init_weights`` (called by mmengine's runner before training),
    from a local file: there is no hub download.

    Args:
        model_name: a config of ``pe_dense.models.configs.PE_CONFIGS``.
        checkpoint: local ``.pt``/``.pth``/``.safetensors`` file (official or timm layout).
        out_indices: blocks whose outputs are returned (negative = from the end).
        frozen: no gradients and eval mode for the whole tower (linear probes, frozen-feature heads); its forward
            runs under ``torch.no_grad()``, so no activations are kept for backward.
        output_cls_token: return ``(map, cls)`` pairs, ``cls`` of shape (B, W), instead of maps (mmseg's ViT
            convention, for probes that concatenate the cls token and DPT readouts). Models without a cls token
            (G) refuse it.
        autocast_dtype: run only the tower under autocast (``"bfloat16"``/``"float16"``) and return float32 maps,
            as the released DETA did (mmcv's CUDA deformable attention has no bf16 kernel, so whole-model AMP
            would have to be fp16). None (default): follow the caller's precision.
        model_overrides: config fields to change, e.g. ``dict(layers=2, patch_size=16)``.
        other args: see :class:`PEVisionTransformer`.
    """

    def __init__(self, model_name: str = "PE-Spatial-B16-512", checkpoint: Optional[str] = None,
                 out_indices: Sequence[int] = (-1,), frozen: bool = False, window_size: int = 0,
                 global_blocks: Sequence[int] = (), window_padding: str = "mask", rope_mode: str = "official",
                 rope_ref_size: Optional[int] = None, norm_eps: float = 1e-5, pos_embed_resize: str = "bilinear",
                 pos_grid: Optional[int] = None, drop_path_rate: float = 0.0,
                 grad_checkpointing: bool = False, pad_to_patch: bool = True, model_overrides: Optional[dict] = None,
                 autocast_dtype: Optional[str] = None, output_cls_token: bool = False,
                 init_cfg: Optional[dict] = None):
        if init_cfg is not None:
            raise ValueError("PEBackbone loads weights through checkpoint=PATH, not init_cfg")
        cfg = get_config(model_name).replace(**(model_overrides or {}))
        super().__init__(cfg, rope_mode=rope_mode, rope_ref_size=rope_ref_size, pos_embed_resize=pos_embed_resize,
                         pos_grid=pos_grid, window_size=window_size, global_blocks=global_blocks,
                         window_padding=window_padding, norm_eps=norm_eps, drop_path_rate=drop_path_rate,
                         grad_checkpointing=grad_checkpointing, pad_to_patch=pad_to_patch)
        self.checkpoint = checkpoint
        self.autocast_dtype = getattr(torch, autocast_dtype) if autocast_dtype else None
        if self.autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast_dtype={autocast_dtype!r}; use 'bfloat16', 'float16' or None")
        self.out_indices = tuple(self._layer_index(i) for i in out_indices)
        if output_cls_token and not cfg.use_cls_token:
            raise ValueError(f"output_cls_token=True, but {cfg.name} has no cls token: set output_cls_token=False "
                             "(for a probe: don't concatenate the cls token; for DPT: readout='ignore')")
        self.output_cls_token = output_cls_token
        self.frozen = frozen
        # The contract a neck checks (see necks.check_pyramid_contract).
        self.out_channels = tuple(cfg.width for _ in self.out_indices)
        self.out_strides = tuple(cfg.patch_size for _ in self.out_indices)
        if frozen:
            self.requires_grad_(False)

    def init_weights(self) -> None:
        """Load ``checkpoint`` strictly; a Core file's pool/projection/ln_post are dropped if this model has none."""
        if not self.checkpoint:
            return
        sd = load_state_dict_file(self.checkpoint)
        own = self.state_dict()
        sd = {k: v for k, v in sd.items() if k in own or k.split(".")[0] not in ("attn_pool", "proj", "ln_post")}
        load_pe_checkpoint(self, sd, strict=True, source=self.checkpoint)

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> Tuple:
        """One (B, W, h, w) map per ``out_indices`` entry, or ``(map, cls (B, W))`` with ``output_cls_token``."""
        region = torch.autocast(x.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
        # A frozen tower keeps no activations for backward: nothing upstream of it can take a gradient.
        with region, torch.no_grad() if self.frozen else nullcontext():
            feats = self.forward_intermediates(x, indices=self.out_indices, output_fmt="NCHW",
                                               return_prefix_tokens=self.output_cls_token)
        cast = (lambda t: t.float()) if self.autocast_dtype is not None else (lambda t: t)
        if self.output_cls_token:
            return tuple((cast(m), cast(p[:, 0])) for m, p in feats)
        return tuple(cast(f) for f in feats)
