"""Spatial-alignment losses of PE (arXiv 2504.13181, appendix B.3; PE_FACTS section 5).

L = w_core * L_core + w_loc * L_loc with
  L_core = -(1/n) sum_k cos(S_k, T_k)                          (the minus sign confirmed in perception_models #43)
  L_loc  = (1/n^2) sum_ij (cos(S_i, S_j) - exp(t (cos(A_i, A_j) - 1)))^2,  A = SAM features, t = 20.
The sharpening exp(t (s - 1)) acts on the SAM (teacher) side only. Similarities and the exponential are computed
in float32 whatever the autocast dtype, because bf16 cosines of near-identical tokens lose the differences L_loc is
about. Inputs are patch tokens only: callers strip cls tokens first (``strip_prefix``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

CORE_FORMS = ("neg_cos", "one_minus_cos")


def strip_prefix(tokens: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Drop cls (prefix) tokens from (B, N, C): pairwise losses are defined on the spatial grid only."""
    return tokens[:, num_prefix_tokens:] if num_prefix_tokens else tokens


def pairwise_cosine(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> (B, N, N) cosine similarities, computed in float32 outside autocast."""
    with torch.autocast(device_type=tokens.device.type, enabled=False):
        x = F.normalize(tokens.float(), dim=-1, eps=1e-6)
        return x @ x.transpose(1, 2)


def sharpen(similarity: torch.Tensor, temperature: float = 20.0) -> torch.Tensor:
    """exp(t (s - 1)): maps s = 1 to 1 and shrinks weaker similarities towards 0 (teacher side only)."""
    with torch.autocast(device_type=similarity.device.type, enabled=False):
        return torch.exp(temperature * (similarity.float() - 1.0))


def core_loss(student: torch.Tensor, teacher: torch.Tensor, form: str = "neg_cos") -> torch.Tensor:
    """Mean over tokens of -cos (published, #43) or 1 - cos (same gradient, loss >= 0; option ``form``)."""
    if form not in CORE_FORMS:
        raise ValueError(f"core loss form {form!r} is unknown; use one of {CORE_FORMS}")
    if student.shape != teacher.shape:
        raise ValueError(f"student tokens {tuple(student.shape)} and teacher tokens {tuple(teacher.shape)} differ; "
                         "strip cls tokens and run both at the same token grid and width")
    with torch.autocast(device_type=student.device.type, enabled=False):
        cos = F.cosine_similarity(student.float(), teacher.float(), dim=-1, eps=1e-6)
    return -cos.mean() if form == "neg_cos" else (1.0 - cos).mean()


def loc_loss(student: torch.Tensor, sam_features: torch.Tensor, temperature: Optional[float] = 20.0,
             include_diagonal: bool = True, target_is_similarity: bool = False) -> torch.Tensor:
    """MSE between the student's token cosine matrix and the sharpened SAM cosine matrix.

    Args:
        student: (B, N, C) student patch tokens.
        sam_features: (B, N, P) SAM per-token features (P prompt logits), or, with ``target_is_similarity``,
            an already computed (B, N, N) SAM cosine matrix.
        include_diagonal: the paper's sum runs over all (i, j); the diagonal is 1 vs 1 and only dilutes the mean.
            ``False`` averages over the n (n - 1) off-diagonal pairs (an open choice, PE_FACTS section 5).
        temperature: t of the sharpening; ``None`` compares the raw teacher cosines (distillation from G).
    """
    s = pairwise_cosine(student)
    t = sam_features.float() if target_is_similarity else pairwise_cosine(sam_features)
    if s.shape != t.shape:
        raise ValueError(f"student similarity {tuple(s.shape)} and SAM similarity {tuple(t.shape)} differ; bring the "
                         "SAM features to the student's token grid (SAMTargets(token_grid=...))")
    err = (s - (t if temperature is None else sharpen(t, temperature))) ** 2
    if include_diagonal:
        return err.mean()
    n = s.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    return err[:, off].mean()


def feature_distill_loss(student: torch.Tensor, teacher: torch.Tensor, form: str = "smooth_l1") -> torch.Tensor:
    """Direct feature distillation (small models, after the student's projection to the teacher width).

    ``smooth_l1`` (default; robust to the teacher's large-norm tokens), ``mse`` or ``cosine`` (1 - cos)."""
    with torch.autocast(device_type=student.device.type, enabled=False):
        s, t = student.float(), teacher.float()
        if form == "smooth_l1":
            return F.smooth_l1_loss(s, t)
        if form == "mse":
            return F.mse_loss(s, t)
        if form == "cosine":
            return (1.0 - F.cosine_similarity(s, t, dim=-1, eps=1e-6)).mean()
    raise ValueError(f"feature distillation form {form!r} is unknown; use 'smooth_l1', 'mse' or 'cosine'")
