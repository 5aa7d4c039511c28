"""SAM 2 point-grid logits as per-token teacher features (PE alignment's second teacher, PE_FACTS section 5).

``SAM2ImagePredictor`` copies the image embedding once per prompt, hard-codes 1024-px feature sizes and works
one image at a time through numpy. ``SAMTargets`` calls the model's own stages instead, for a batch of images:
``forward_image`` -> ``_prepare_backbone_features`` (+ ``no_mem_embed``) -> ``sam_prompt_encoder`` ->
``sam_mask_decoder`` with the point prompts decoded in chunks. The P = points_per_side**2 single-point logits
(low-res, image_size / 4) are stacked as P channels per pixel and resized to the student's token grid.

Open choices (named options, defaults in brackets):
- ``mask_output`` ["single"]: SAM's single-mask output (with the decoder's stability fallback when the model
  was built with ``apply_postprocessing=True``, as ``build_sam2`` does by default) or ``"best_iou"``: the
  best-scored of the three multimask outputs (what the automatic mask generator ranks by).
- ``logit_transform`` ["clamp"]: ``"clamp"`` to +-32 as the predictor returns them, ``"raw"`` or ``"sigmoid"``.
- ``resize`` ["area"]: low-res logits -> token grid by ``"area"`` averaging (each token gets the mean over its
  cell; exact for a 256 -> 32 downsample) or ``"bilinear"`` (align_corners=False, antialiased).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)
MASK_OUTPUTS = ("single", "best_iou")
LOGIT_TRANSFORMS = ("clamp", "raw", "sigmoid")
RESIZES = ("area", "bilinear")


def point_grid(points_per_side: int) -> torch.Tensor:
    """(P, 2) cell centres in [0, 1], x then y, row-major: the same points as sam2.utils.amg.build_point_grid."""
    centres = (torch.arange(points_per_side, dtype=torch.float64) + 0.5) / points_per_side
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


class SAMTargets(nn.Module):
    """Frozen SAM 2 turned into (B, P, h, w) per-token features for L_loc.

    Args:
        sam: a ``SAM2Base`` from ``sam2.build_sam.build_sam2`` (any size; tests use a tiny random one).
        points_per_side: 32 as published (1024 prompts, one per 32x32 token cell).
        chunk_size: prompts decoded at once (decoder memory about 25 MiB per prompt for SAM 2.1-L in fp32).
    """

    def __init__(self, sam: nn.Module, points_per_side: int = 32, chunk_size: int = 128,
                 mask_output: str = "single", logit_transform: str = "clamp", resize: str = "area"):
        super().__init__()
        for name, value, allowed in (("mask_output", mask_output, MASK_OUTPUTS),
                                     ("logit_transform", logit_transform, LOGIT_TRANSFORMS),
                                     ("resize", resize, RESIZES)):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is unknown; use one of {allowed}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.sam = sam.eval().requires_grad_(False)
        self.points_per_side = points_per_side
        self.chunk_size = chunk_size
        self.mask_output = mask_output
        self.logit_transform = logit_transform
        self.resize = resize
        self.register_buffer("mean", torch.tensor(SAM_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(SAM_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "SAMTargets":
        """The teacher stays in eval mode whatever the trainer does."""
        super().train(False)
        return self

    @property
    def image_size(self) -> int:
        return int(self.sam.image_size)

    def points(self) -> torch.Tensor:
        """(P, 2) prompt coordinates in the model's input pixels (what ``SAM2ImagePredictor._predict`` takes)."""
        return (point_grid(self.points_per_side) * self.image_size).float()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1], (B, 3, H, W), the student's augmented view -> SAM's input: resized, ImageNet-normalised."""
        size = (self.image_size, self.image_size)
        if images.shape[-2:] != size:
            images = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        return (images.float() - self.mean) / self.std

    def image_features(self, sam_input: torch.Tensor):
        """Image embedding (B, C, h, w) and high-res features, as the predictor prepares them."""
        backbone_out = self.sam.forward_image(sam_input)
        _, vision_feats, _, sizes = self.sam._prepare_backbone_features(backbone_out)
        if self.sam.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.sam.no_mem_embed
        b = sam_input.shape[0]
        feats = [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(vision_feats, sizes)]
        return feats[-1], feats[:-1]

    def _decode(self, embed: torch.Tensor, high_res, coords: torch.Tensor) -> torch.Tensor:
        """Single-point logits (n, h, w) for one image's embedding (1, C, h, w) and n points."""
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
        sparse, dense = self.sam.sam_prompt_encoder(points=(coords[:, None], labels), boxes=None, masks=None)
        multimask = self.mask_output == "best_iou"
        logits, iou, _, _ = self.sam.sam_mask_decoder(
            image_embeddings=embed, image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
            repeat_image=True, high_res_features=high_res)
        if multimask:
            best = iou.argmax(dim=1)
            return logits[torch.arange(logits.shape[0]), best]
        return logits[:, 0]

    @torch.no_grad()
    def prompt_logits(self, images: torch.Tensor, coords: torch.Tensor = None) -> torch.Tensor:
        """(B, P, image_size/4, image_size/4) logits, one channel per point prompt, after ``logit_transform``."""
        embed, high_res = self.image_features(self.preprocess(images))
        coords = (self.points() if coords is None else coords).to(embed.device)
        out = []
        for b in range(embed.shape[0]):
            hr = [f[b: b + 1] for f in high_res]
            chunks = [self._decode(embed[b: b + 1], hr, coords[i: i + self.chunk_size])
                      for i in range(0, coords.shape[0], self.chunk_size)]
            out.append(torch.cat(chunks))
        logits = torch.stack(out).float()
        if self.logit_transform == "clamp":
            return logits.clamp(-32.0, 32.0)
        return logits.sigmoid() if self.logit_transform == "sigmoid" else logits

    @torch.no_grad()
    def forward(self, images: torch.Tensor, token_grid: Tuple[int, int]) -> torch.Tensor:
        """(B, P, gh, gw) float32 SAM features on the student's token grid for images in [0, 1]."""
        logits = self.prompt_logits(images)
        if self.resize == "area":
            return F.adaptive_avg_pool2d(logits, token_grid)
        return F.interpolate(logits, size=token_grid, mode="bilinear", align_corners=False, antialias=True)

    def targets(self, images: torch.Tensor, keys, token_grid: Tuple[int, int]) -> torch.Tensor:
        """The trainer's target-source interface (a cache reader looks up ``keys`` instead of running SAM)."""
        return self(images, token_grid)


def tokens_from_map(features: torch.Tensor) -> torch.Tensor:
    """(B, P, h, w) -> (B, h*w, P) in the row-major token order of PE."""
    return features.flatten(2).transpose(1, 2)


def tiny_sam2_overrides(image_size: int = 128) -> list:
    """Hydra overrides that shrink ``sam2.1_hiera_t.yaml`` to a ~3.5M-parameter random model (tests, CPU demo)."""
    return [f"++model.image_size={image_size}", "++model.image_encoder.trunk.embed_dim=16",
            "++model.image_encoder.trunk.num_heads=1", "++model.image_encoder.trunk.stages=[1,1,2,1]",
            "++model.image_encoder.trunk.global_att_blocks=[3]", "++model.image_encoder.trunk.window_spec=[4,4,4,4]",
            "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]", "++model.image_encoder.neck.d_model=32",
            "++model.image_encoder.neck.position_encoding.num_pos_feats=32", "++model.memory_attention.d_model=32",
            "++model.memory_attention.num_layers=1"]


def build_sam2_teacher(config: str = "configs/sam2.1/sam2.1_hiera_l.yaml", checkpoint: str = None,
                       overrides: list = (), device: str = "cpu", apply_postprocessing: bool = True) -> nn.Module:
    """SAM 2 through ``sam2.build_sam.build_sam2`` (local checkpoint or random weights), frozen, eval mode."""
    from pe_dense.extras import requires

    with requires("align", "SAM 2 targets (pe_dense.align.sam_targets)"):
        from sam2.build_sam import build_sam2
    model = build_sam2(config, checkpoint, device=device, mode="eval", hydra_overrides_extra=list(overrides),
                       apply_postprocessing=apply_postprocessing)
    return model.requires_grad_(False)
