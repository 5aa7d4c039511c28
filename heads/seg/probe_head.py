"""Linear probe on frozen PE features, as an mmseg decode head (loss, ``predict``, ignore_index, samplers from mmseg).

Two probes (``probe=``):

- ``'bn_linear'`` (default): DINOv2's "linear" ADE20k probe. BatchNorm over the (concatenated) feature channels, then
  one 1x1 convolution to the classes: a linear map of each token's features.
- ``'linear_conv'``: our reading of PE's "linear layer + convolutional layer" (perception_models #109; the
  projection width was never stated). BatchNorm, a per-token linear projection (1x1 conv) to ``hidden_channels``,
  then a ``conv_kernel_size`` x ``conv_kernel_size`` convolution to the classes. There is no activation between
  them, so the probe stays a linear function of the frozen features, but each output token also sees its
  neighbours. ``hidden_channels`` (default 256) is our choice.

Inputs: the tuple a ``PEBackbone`` returns, one entry per block in its ``out_indices``: ``(B, W, h, w)`` maps, or
``(map, cls (B, W))`` pairs when the backbone has ``output_cls_token=True``. ``in_index`` picks entries; each
picked map gets its cls token broadcast to every position and concatenated after its channels when
``use_cls_token`` is set, then the picked layers are concatenated in ``in_index`` order (DINOv2's "linear4" with four
entries): channels ``[layer0 | cls0 | layer1 | cls1 | ...]``.

Logits are upsampled bilinearly to the label size in the loss and to the image size at inference (mmseg's
``loss_by_feat`` / ``predict_by_feat``). ``patch_size`` makes that exact for inputs that are not a multiple of the
patch: the backbone then zero-pads right and bottom (``pad_to_patch``), so the token grid covers more pixels than
the image; the logits are upsampled to the padded size and cropped, instead of stretched over the image.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

PROBES = ("bn_linear", "linear_conv")


@MODELS.register_module()
class LinearProbeHead(BaseDecodeHead):
    """BatchNorm + 1x1 conv probe (or BN + linear + conv), see the module docstring.

    Args:
        in_channels: channels of ONE backbone layer (the model width W).
        num_classes: classes predicted.
        in_index: backbone outputs used, in concatenation order (``(0,)`` = the only/first output).
        use_cls_token: concatenate each layer's cls token (needs a backbone with ``output_cls_token=True``).
        probe: ``'bn_linear'`` (DINOv2 "linear") or ``'linear_conv'`` (our reading of PE's wording).
        hidden_channels, conv_kernel_size: the projection width and the conv kernel of ``'linear_conv'``.
        patch_size: the backbone's patch; enables the padding-aware upsampling (None: plain mmseg resizing).
        norm_cfg: the BatchNorm (``dict(type='SyncBN')`` for multi-GPU runs, as DINOv2).
        other args: as mmseg's ``BaseDecodeHead`` (``dropout_ratio`` defaults to 0 here, as DINOv2's probe).
    """

    def __init__(self, in_channels: int, num_classes: int, in_index: Union[int, Sequence[int]] = (0,),
                 use_cls_token: bool = False, probe: str = "bn_linear", hidden_channels: int = 256,
                 conv_kernel_size: int = 3, patch_size: Optional[int] = None,
                 norm_cfg: Optional[dict] = None, dropout_ratio: float = 0.0, **kwargs):
        if probe not in PROBES:
            raise ValueError(f"probe={probe!r}; use one of {PROBES}")
        if not isinstance(in_channels, int):
            raise TypeError(f"in_channels is the width of one backbone layer (an int), got {in_channels!r}; "
                            "the head concatenates the layers of in_index itself")
        if kwargs.get("input_transform") not in (None, "resize_concat"):
            raise ValueError("LinearProbeHead always concatenates its layers (input_transform='resize_concat')")
        kwargs.pop("input_transform", None)
        indices = (in_index,) if isinstance(in_index, int) else tuple(in_index)
        per_layer = in_channels * (2 if use_cls_token else 1)
        total = per_layer * len(indices)
        channels = hidden_channels if probe == "linear_conv" else total
        super().__init__([per_layer] * len(indices), channels, num_classes=num_classes, in_index=list(indices),
                         input_transform="resize_concat", norm_cfg=norm_cfg or dict(type="BN"),
                         dropout_ratio=dropout_ratio, **kwargs)
        self.layer_channels = in_channels
        self.use_cls_token = use_cls_token
        self.probe = probe
        self.patch_size = patch_size
        self.bn = build_norm_layer(self.norm_cfg, total)[1]
        if probe == "linear_conv":
            self.linear = nn.Conv2d(total, hidden_channels, kernel_size=1)
            self.conv_seg = nn.Conv2d(hidden_channels, self.out_channels, kernel_size=conv_kernel_size,
                                      padding=conv_kernel_size // 2)

    # ------------------------------------------------------------------------------------------------ features
    def _layer_features(self, entry, index: int) -> torch.Tensor:
        """One backbone output -> (B, C, h, w), with its cls token appended as channels if asked for."""
        if isinstance(entry, (tuple, list)):
            fmap, cls = entry
            if self.use_cls_token:
                fmap = torch.cat([fmap, cls[:, :, None, None].expand(-1, -1, *fmap.shape[-2:])], dim=1)
        else:
            fmap = entry
            if self.use_cls_token:
                raise ValueError(
                    "use_cls_token=True but the backbone returned maps without cls tokens: build it with "
                    "output_cls_token=True (models with a cls token only; PE-Spatial-G has none, so set "
                    "use_cls_token=False there)")
        expected = self.layer_channels * (2 if self.use_cls_token else 1)
        if fmap.ndim != 4 or fmap.shape[1] != expected:
            raise ValueError(f"backbone output {index} has shape {tuple(fmap.shape)}, the head expects "
                             f"(B, {expected}, h, w): set decode_head.in_channels to the backbone width")
        return fmap

    def _transform_inputs(self, inputs) -> torch.Tensor:
        if max(self.in_index) >= len(inputs) or min(self.in_index) < -len(inputs):
            raise IndexError(f"decode_head.in_index={tuple(self.in_index)} but the backbone returns {len(inputs)} "
                             "outputs: make in_index match the backbone's out_indices")
        feats = [self._layer_features(inputs[i], i) for i in self.in_index]
        size = feats[0].shape[2:]
        feats = [f if f.shape[2:] == size else
                 resize(f, size=size, mode="bilinear", align_corners=self.align_corners) for f in feats]
        return torch.cat(feats, dim=1)

    def forward(self, inputs) -> torch.Tensor:
        """Backbone outputs -> logits (B, num_classes, h, w) at the token grid."""
        x = self.bn(self._transform_inputs(inputs))
        if self.probe == "linear_conv":
            x = self.linear(x)
        return self.cls_seg(x)

    # ----------------------------------------------------------------------------------------------- upsampling
    def resize_logits(self, logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Bilinear upsampling of token-grid logits to ``size`` (H, W), cropping the backbone's patch padding."""
        h, w = int(size[0]), int(size[1])
        gh, gw = logits.shape[-2:]
        p = self.patch_size
        if p and (gh, gw) == (math.ceil(h / p), math.ceil(w / p)) and (gh * p, gw * p) != (h, w):
            logits = resize(logits, size=(gh * p, gw * p), mode="bilinear", align_corners=self.align_corners)
            return logits[..., :h, :w]
        if (gh, gw) == (h, w):
            return logits
        return resize(logits, size=(h, w), mode="bilinear", align_corners=self.align_corners)

    def loss_by_feat(self, seg_logits: torch.Tensor, batch_data_samples) -> dict:
        # mmseg resizes to the label size again: a no-op at equal size (bilinear, align_corners=False).
        label_size = batch_data_samples[0].gt_sem_seg.shape
        return super().loss_by_feat(self.resize_logits(seg_logits, label_size), batch_data_samples)

    def predict_by_feat(self, seg_logits: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        # The target size as mmseg's BaseDecodeHead.predict_by_feat chooses it (torch.Size = a slide window).
        meta = batch_img_metas[0]
        if isinstance(meta["img_shape"], torch.Size):
            size = meta["img_shape"]
        elif "pad_shape" in meta:
            size = meta["pad_shape"][:2]
        else:
            size = meta["img_shape"]
        return super().predict_by_feat(self.resize_logits(seg_logits, size[:2]), batch_img_metas)
