"""Settings of an alignment or distillation run: the published recipe as defaults, every open choice named."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass
class AlignSettings:
    """Recipe values (defaults: the published G recipe, PE_FACTS section 5) and the open choices, each named."""

    mode: str = "align"  # "align": L_core + L_loc (SAM) | "distill": pairwise + feature distillation from G
    image_size: int = 448
    batch_size: int = 12  # per device and micro-batch; published global batch 12,288
    accum_steps: int = 1  # micro-batches per optimizer step (reach the published batch with fewer devices)
    lr: float = 5e-4
    betas: Tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    schedule: str = "constant"  # no warm-up is published; what follows it is not ("constant" | "cosine")
    total_steps: int = 24_000
    teacher_image_size: Optional[int] = None  # the teacher's input side if it differs (distillation: G at 448)
    teacher_layer: int = 40  # "layer 41" of PE-Core G; the paper: 39 may be slightly better
    mask_ratio: float = 0.75
    mask_block: Tuple[int, int] = (2, 2)
    mask_method: str = "zero_pixels"  # see masking.py
    loc_sees_masked: bool = True  # L_loc on the masked student (one forward); False adds an unmasked forward
    temperature: Optional[float] = 20.0  # SAM sharpening; distillation default None (raw teacher cosines)
    include_diagonal: bool = True
    core_form: str = "neg_cos"
    w_core: float = 1.0
    w_loc: float = 1.0
    w_feat: float = 0.0  # distillation: direct feature loss through a linear projection
    feat_form: str = "smooth_l1"
    amp: bool = False  # bf16 autocast for student and teachers; losses stay fp32
    seed: int = 0
    aspect: Tuple[float, float] = (0.75, 1.33)
    brightness: float = 0.32
    saturation: float = 0.32
    flip_p: float = 0.5
    log_interval: int = 10

    def __post_init__(self):  # configs give lists; keep tuples so saved and current settings compare equal
        for name in ("betas", "mask_block", "aspect"):
            setattr(self, name, tuple(getattr(self, name)))
