"""Zero-shot label propagation on frozen token features (the DAVIS protocol of DINO's evaluation).

Any (T, C, h, w) token features can be propagated, so the protocol is independent of the backbone. With the
default arguments the predictions are those of the reference code (PE_FACTS section 6):

1. Token features are L2-normalised.
2. Frame 0 gives hard one-hot labels: the full-size mask shrunk to the token grid with PIL's NEAREST rule.
   A label whose pixels are all missed by that shrink gets no weight and is never predicted again.
3. Each later frame attends to frame 0 plus the soft token-level label maps of the last ``n_last_frames``
   predicted frames (oldest first), taken before upsampling or argmax.
4. Affinity ``exp(cos / temperature)``, multiplied by a square 0/1 window of ``radius`` tokens (the same for
   every context frame); top-k jointly over all context tokens keeping every value >= the k-th (ties keep
   more); weights divided by their sum; labels = weighted sum of context labels.
5. The token-level map is upsampled bilinearly by exactly ``patch_size`` (align_corners=False), each channel is
   min-max rescaled to [0, 1] on its own, argmax, and the result is resized to the frame size with PIL NEAREST.
"""
from __future__ import annotations

import collections
import logging
from typing import Deque, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .resize import nearest_resize

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_ELEMENTS = 1 << 25  # affinity entries computed at once (128 MiB in float32): bounds memory only


def neighbourhood_window(h: int, w: int, radius: Optional[int], device=None) -> Optional[torch.Tensor]:
    """(h*w, h*w) bool: key token within a square of ``radius`` tokens of the query (Chebyshev distance).

    ``radius`` None or <= 0 means no restriction (the reference skips the window when its size is 0).
    """
    if radius is None or radius <= 0:
        return None
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    near_rows = (rows[:, None] - rows[None, :]).abs() <= radius
    near_cols = (cols[:, None] - cols[None, :]).abs() <= radius
    return near_rows & near_cols


def first_frame_labels(first_mask: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """Hard one-hot labels (L, h, w) of frame 0 at token resolution, L = 1 + largest label kept by the shrink."""
    small = nearest_resize(first_mask, grid).long()
    num_labels = int(small.max()) + 1
    return F.one_hot(small, num_labels).permute(2, 0, 1).float()


def upsample_and_decode(token_labels: torch.Tensor, patch_size: int, frame_size: Tuple[int, int]) -> torch.Tensor:
    """Soft token labels (L, h, w) -> (H, W) int64 label map, exactly as the reference decodes a frame."""
    up = F.interpolate(token_labels[None], scale_factor=patch_size, mode="bilinear", align_corners=False,
                       recompute_scale_factor=False)[0]
    peak = up.amax(dim=(1, 2), keepdim=True)
    shifted = up - up.amin(dim=(1, 2), keepdim=True)
    rescaled = shifted / shifted.amax(dim=(1, 2), keepdim=True)
    up = torch.where(peak > 0, rescaled, up)  # channels that are zero everywhere are left alone
    labels = torch.max(up, dim=0).indices  # first index wins ties, as in the reference
    return nearest_resize(labels, frame_size)


def infer_patch_size(frame_size: Tuple[int, int], grid: Tuple[int, int]) -> int:
    """The patch size implied by a frame and its token grid, when unambiguous."""
    (H, W), (h, w) = frame_size, grid
    if H // h == W // w and H // h >= 1:
        return H // h
    raise ValueError(f"cannot infer the patch size from a {H}x{W} mask and a {h}x{w} token grid: pass patch_size")


class LabelPropagator:
    """Streaming label propagation: feed one frame's features at a time, get its label map back.

    Holds only frame 0 and the last ``n_last_frames`` frames, so videos of any length fit in memory.

    Args:
        first_feat: (C, h, w) token features of frame 0.
        first_mask: (H, W) integer labels of frame 0 (0 = background).
        n_last_frames: predicted frames kept as context besides frame 0.
        radius: half side of the square neighbourhood window in tokens; None or <= 0 disables it.
        topk: affinities kept per query token, over all context tokens jointly (ties at the k-th value kept).
        temperature: affinity = exp(cos / temperature).
        patch_size: upsampling factor from tokens to pixels; inferred from the sizes when None.
        chunk_elements: affinity entries computed at once; only bounds memory, results do not change.
    """

    def __init__(self, first_feat: torch.Tensor, first_mask: Union[torch.Tensor, np.ndarray], *,
                 n_last_frames: int = 7, radius: Optional[int] = 12, topk: int = 5, temperature: float = 0.1,
                 patch_size: Optional[int] = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
        if first_feat.ndim != 3:
            raise ValueError(f"first_feat must be (C, h, w) token features, got shape {tuple(first_feat.shape)}")
        mask = torch.as_tensor(np.asarray(first_mask) if not isinstance(first_mask, torch.Tensor) else first_mask)
        if mask.ndim != 2 or mask.dtype.is_floating_point or mask.dtype == torch.bool:
            raise ValueError(f"first_mask must be an (H, W) integer label map, got {mask.dtype} "
                             f"{tuple(mask.shape)}; convert colour masks to label indices first")
        if int(mask.min()) < 0:
            raise ValueError("first_mask has negative labels; labels must be 0 (background), 1, 2, ...")
        if n_last_frames < 0 or topk < 1 or temperature <= 0:
            raise ValueError(f"need n_last_frames >= 0, topk >= 1, temperature > 0; got {n_last_frames}, "
                             f"{topk}, {temperature}")
        self.grid = (first_feat.shape[1], first_feat.shape[2])
        self.frame_size = (mask.shape[0], mask.shape[1])
        self.patch_size = patch_size or infer_patch_size(self.frame_size, self.grid)
        self.n_last_frames, self.topk, self.temperature = n_last_frames, topk, temperature
        self.chunk_elements = chunk_elements
        self.device = first_feat.device
        self.window = neighbourhood_window(*self.grid, radius, device=self.device)
        self.first_labels = first_frame_labels(mask.to(self.device), self.grid)
        self.num_labels = self.first_labels.shape[0]
        lost = set(torch.unique(mask).tolist()) - set(torch.unique(self.first_labels.argmax(0)).tolist())
        if lost:
            logger.warning("labels %s vanish when the first mask is shrunk to the %dx%d token grid and will "
                           "never be predicted", sorted(lost), *self.grid)
        self.first_mask = mask
        self.first_keys = self._tokens(first_feat)
        self.queue: Deque[Tuple[torch.Tensor, torch.Tensor]] = collections.deque(maxlen=n_last_frames or None)

    def _tokens(self, feat: torch.Tensor) -> torch.Tensor:
        if tuple(feat.shape[1:]) != self.grid:
            raise ValueError(f"features of shape {tuple(feat.shape)} do not match the first frame's token grid "
                             f"{self.grid}: all frames must be resized to the same input size")
        return F.normalize(feat.float().flatten(1).t(), dim=1, p=2)  # (N, C), one unit vector per token

    def _token_labels(self, queries: torch.Tensor) -> torch.Tensor:
        """Soft labels (L, N) of the query tokens from frame 0 and the queued frames."""
        context = [(self.first_keys, self.first_labels.flatten(1))] + list(self.queue)
        keys = torch.cat([k for k, _ in context])  # (n*N, C), context frames in order: first, oldest..newest
        labels = torch.cat([lab for _, lab in context], dim=1)  # (L, n*N)
        n_ctx, n_tok = len(context), queries.shape[0]
        k = min(self.topk, keys.shape[0])
        chunk = max(1, self.chunk_elements // keys.shape[0])
        out = torch.zeros(n_tok, labels.shape[0], device=queries.device)
        labels_t = labels.t().contiguous()  # (n*N, L)
        for start in range(0, n_tok, chunk):
            stop = min(start + chunk, n_tok)
            # in-place passes over the (q, n*N) affinity: fresh allocations of it dominate the CPU time
            aff = torch.mm(queries[start:stop], keys.t()).div_(self.temperature).exp_()
            if self.window is not None:
                aff.view(stop - start, n_ctx, -1).mul_(self.window[start:stop, None, :])
            out[start:stop] = self._weighted_labels(aff, k, labels_t)
        return out.t()

    @staticmethod
    def _weighted_labels(aff: torch.Tensor, k: int, labels_t: torch.Tensor) -> torch.Tensor:
        """Rows of ``aff`` keep every entry >= their k-th largest (ties included), normalised to sum 1;
        returns the kept weights applied to ``labels_t`` (n*N, L) -> (q, L).

        Top-(k+1) tells which rows have a tie at the k-th value; the others keep exactly their top k, so
        only tied rows need a full pass over the context.
        """
        width = aff.shape[1]
        vals, idx = torch.topk(aff, k=min(k + 1, width), dim=1)
        kth = vals[:, k - 1:k]
        tied = (vals[:, k] >= kth[:, 0]) if width > k else torch.zeros(len(aff), dtype=torch.bool,
                                                                       device=aff.device)
        weights = vals[:, :k] / vals[:, :k].sum(dim=1, keepdim=True)
        out = (weights[:, :, None] * labels_t[idx[:, :k]]).sum(dim=1)
        if tied.any():
            tied_rows = torch.nonzero(tied, as_tuple=True)[0]
            sub = aff[tied_rows]
            rows, cols = torch.nonzero(sub >= kth[tied_rows], as_tuple=True)
            w = sub[rows, cols]
            w = w / torch.zeros(len(tied_rows), device=aff.device).index_add_(0, rows, w)[rows]
            out[tied_rows] = torch.zeros(len(tied_rows), labels_t.shape[1], device=aff.device).index_add_(
                0, rows, labels_t[cols] * w[:, None])
        return out

    @torch.no_grad()
    def step(self, feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Propagate to the next frame: (C, h, w) features -> ((H, W) labels, (L, h, w) soft token labels)."""
        queries = self._tokens(feat.to(self.device))
        soft = self._token_labels(queries)
        if self.n_last_frames:
            self.queue.append((queries, soft))
        soft_map = soft.view(self.num_labels, *self.grid)
        return upsample_and_decode(soft_map, self.patch_size, self.frame_size), soft_map


@torch.no_grad()
def propagate(feats: Union[torch.Tensor, Sequence[torch.Tensor]], first_mask: Union[torch.Tensor, np.ndarray], *,
              n_last_frames: int = 7, radius: Optional[int] = 12, topk: int = 5, temperature: float = 0.1,
              patch_size: Optional[int] = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> List[torch.Tensor]:
    """Propagate frame 0's labels through a video given its token features.

    Args:
        feats: (T, C, h, w) token features (or a sequence of T (C, h, w) tensors), e.g. PE's last block.
        first_mask: (H, W) integer labels of frame 0. The frames behind ``feats`` were stretched from H x W to
            (h * patch_size) x (w * patch_size); predictions are decoded at that size and resized back to
            H x W with PIL's NEAREST rule (an identity when the sizes agree).
        n_last_frames, radius, topk, temperature, patch_size, chunk_elements: see :class:`LabelPropagator`.

    Returns:
        T int64 (H, W) label maps on the features' device; entry 0 is ``first_mask`` itself.
    """
    if len(feats) == 0:
        raise ValueError("feats is empty: need the features of at least the first frame")
    propagator = LabelPropagator(feats[0], first_mask, n_last_frames=n_last_frames, radius=radius, topk=topk,
                                 temperature=temperature, patch_size=patch_size, chunk_elements=chunk_elements)
    masks = [propagator.first_mask.long().to(propagator.device)]
    for t in range(1, len(feats)):
        masks.append(propagator.step(feats[t])[0])
    return masks
