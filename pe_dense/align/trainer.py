"""Alignment / distillation trainer: student, frozen PE teacher, frozen SAM 2 target source (issue 11).

Everything random derives from (seed, global sample index): which image (a per-epoch permutation), its view
(``augment.sample_view``) and its token mask (``masking.block_mask``); drop path draws from torch's RNG reseeded
from (seed, step, rank) inside each step (the caller's RNG state is left as it was). So the data and cache position
is the step counter, and a run resumed from a checkpoint repeats the uninterrupted run bit for bit, on any number
of ranks. With several ranks the student is wrapped for ``strategy`` (``parallel.py``: DDP, or FSDP2 sharded per
block); checkpoints always hold the full state dict (official names), rank 0 logs and writes.
Teachers live outside the trained modules: never in the optimizer, never in a checkpoint, always eval mode and
``requires_grad=False``.
"""
from __future__ import annotations

import random
from dataclasses import asdict
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from torch import nn

from pe_dense.io import atomic_save

from .augment import ViewSampler, pe_normalise
from .losses import core_loss, feature_distill_loss, loc_loss, strip_prefix
from .masking import apply_token_mask, batch_block_masks
from .parallel import check_strategy, full_state, gradient_sync, load_full_state, wrap_for_strategy
from .sam_targets import tokens_from_map
from .settings import AlignSettings


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 8191 + rank) % (2 ** 63)


class _StudentTokens(nn.Module):
    """The student's patch tokens (and their projection, distillation) as ``forward``, so DDP can wrap it."""

    def __init__(self, student: nn.Module, projection: Optional[nn.Module]):
        super().__init__()
        self.student, self.projection = student, projection

    def forward(self, x: torch.Tensor):
        # a copy, not a view of the output: FSDP2 hooks its backward all-gather on the module's output tensors
        tokens = strip_prefix(self.student.forward_features(x), self.student.num_prefix_tokens).clone()
        return tokens, (self.projection(tokens.float()).clone() if self.projection is not None else None)


class AlignTrainer:
    """Runs optimizer steps of the alignment; see the module docstring for the determinism contract.

    Args:
        student: ``PEVisionTransformer`` to train (``drop_path_rate``, ``grad_checkpointing`` set by the caller).
        teacher: frozen PE tower giving L_core (align) or the distillation targets; ``None`` for no L_core.
        sam_targets: has ``targets(views in [0, 1], view keys, token grid) -> (B, P, gh, gw)``: a ``SAMTargets``
            module or a cache reader. ``None`` in distillation mode.
        images: a sequence of training images, uint8 (3, H, W) tensors (decoded on access, e.g. ``ImageFolder``).
        strategy: ``'ddp'`` or ``'fsdp'`` when torch.distributed is initialised with several ranks.
    """

    def __init__(self, student: nn.Module, teacher: Optional[nn.Module], sam_targets,
                 images: Sequence[torch.Tensor], settings: AlignSettings, strategy: str = "ddp"):
        from timm.optim import Lamb

        self.s = settings
        if settings.mode not in ("align", "distill"):
            raise ValueError(f"mode {settings.mode!r} is unknown; use 'align' or 'distill'")
        if settings.mode == "align" and sam_targets is None:
            raise ValueError("align mode needs sam_targets (SAMTargets or a target cache reader)")
        self.student, self.teacher, self.sam_targets, self.images = student, teacher, sam_targets, images
        for frozen in (teacher, sam_targets):
            if isinstance(frozen, nn.Module):
                frozen.eval().requires_grad_(False)
        self.projection = None
        if settings.w_feat > 0:
            self.projection = nn.Linear(student.embed_dim, teacher.embed_dim)
        dist = torch.distributed
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.strategy = check_strategy(strategy)
        self.parts = _StudentTokens(student, self.projection)  # the trained modules; FSDP shards them in place
        self.forward_module = wrap_for_strategy(self.parts, student.blocks, strategy, self.world_size)
        # after wrapping: FSDP replaces the parameters by sharded ones (student first, then the projection)
        self.optimizer = Lamb(self.parts.parameters(), lr=settings.lr, betas=tuple(settings.betas),
                              weight_decay=settings.weight_decay)
        total = max(1, settings.total_steps)
        if settings.schedule == "constant":
            lam = lambda step: 1.0  # noqa: E731
        elif settings.schedule == "cosine":
            lam = lambda step: 0.5 * (1 + np.cos(np.pi * min(step, total) / total))  # noqa: E731
        else:
            raise ValueError(f"schedule {settings.schedule!r} is unknown; use 'constant' or 'cosine'")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lam)
        self.data = ViewSampler(self.images, settings.image_size, settings.batch_size, settings.accum_steps,
                                settings.seed, settings.aspect, settings.flip_p, settings.brightness,
                                settings.saturation, self.rank, self.world_size)
        self.step = 0
        self.history: List[dict] = []

    # ------------------------------------------------------------------ data
    def sample_indices(self, step: int, micro: int):
        return self.data.samples(step, micro)

    def views(self, samples):
        return self.data.views(samples)

    # ------------------------------------------------------------------ losses
    def losses(self, views: torch.Tensor, keys: List[str], sample_ids: Sequence[int]) -> dict:
        s, st = self.s, self.student
        patch = st.patch_size
        grid = (views.shape[-2] // patch, views.shape[-1] // patch)
        x = pe_normalise(views)
        masks = batch_block_masks(grid, sample_ids, s.mask_ratio, tuple(s.mask_block), s.seed)
        x_masked = apply_token_mask(x, masks, patch, s.mask_method, noise_seed=s.seed + int(sample_ids[0]))
        amp = torch.autocast(views.device.type, dtype=torch.bfloat16, enabled=s.amp)
        with amp:
            out, projected = self.forward_module(x_masked)
            out_loc = out if s.loc_sees_masked else self.forward_module(x)[0]
            with torch.no_grad():
                teacher_tokens = None
                if self.teacher is not None:
                    layer = s.teacher_layer if s.mode == "align" else -1
                    tokens = self.teacher.forward_features(self._teacher_input(x), layer_idx=layer)
                    teacher_tokens = strip_prefix(tokens, self.teacher.num_prefix_tokens).float()
        parts = {}
        if s.mode == "align":
            if teacher_tokens is not None and s.w_core:
                parts["loss_core"] = core_loss(out, teacher_tokens, s.core_form)
            with torch.no_grad():
                sam = tokens_from_map(self.sam_targets.targets(views, keys, grid).float())
            parts["loss_loc"] = loc_loss(out_loc, sam, s.temperature, s.include_diagonal)
        else:
            parts["loss_pair"] = loc_loss(out_loc, teacher_tokens, s.temperature, s.include_diagonal)
            if projected is not None:
                parts["loss_feat"] = feature_distill_loss(projected, teacher_tokens, s.feat_form)
        weights = {"loss_core": s.w_core, "loss_loc": s.w_loc, "loss_pair": s.w_loc, "loss_feat": s.w_feat}
        parts["loss"] = sum(weights[k] * v for k, v in parts.items())
        return parts

    def _teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        """The shared view at the teacher's size (distillation: a patch-14 G teacher sees 448 px for 32x32 tokens)."""
        size = self.s.teacher_image_size
        if not size or tuple(x.shape[-2:]) == (size, size):
            return x
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=True)

    # ------------------------------------------------------------------ optimisation
    def train_step(self) -> dict:
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        logged = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_step_seed(self.s.seed, self.step, self.rank))
            for micro in range(self.s.accum_steps):
                samples = self.sample_indices(self.step, micro)
                views, keys = self.views(samples)
                last = micro == self.s.accum_steps - 1
                with gradient_sync(self.forward_module, enabled=last):
                    parts = self.losses(views, keys, [g for g, _ in samples])
                    (parts["loss"] / self.s.accum_steps).backward()
                for k, v in parts.items():
                    logged[k] = logged.get(k, 0.0) + v.item() / self.s.accum_steps
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        logged.update(step=self.step, lr=self.optimizer.param_groups[0]["lr"])
        self.history.append(logged)
        if self.rank == 0 and (self.step % self.s.log_interval == 0 or self.step == 1):
            body = " ".join(f"{k}={v:.5f}" for k, v in logged.items() if k.startswith("loss"))
            print_log(f"align step {self.step}/{self.s.total_steps} {body}", logger="current")
        return logged

    def train(self, until_step: int, checkpoint_path: Optional[str] = None, checkpoint_interval: int = 0) -> None:
        while self.step < until_step:
            self.train_step()
            if checkpoint_path and checkpoint_interval and self.step % checkpoint_interval == 0:
                self.save_checkpoint(checkpoint_path)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Student (full, official names), projection, optimizer (keyed by parameter name), schedule, step and
        every RNG; never a teacher. Collective under FSDP (every rank calls it; rank 0 gets the tensors)."""
        model, optim = full_state(self.parts, self.optimizer)
        return {"student": _strip(model, "student."), "projection": _strip(model, "projection.") or None,
                "optimizer": optim, "scheduler": self.scheduler.state_dict(),
                "step": self.step, "settings": asdict(self.s), "strategy": self.strategy, "world_size": self.world_size,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}

    def student_state_dict(self) -> dict:
        """The student's full weights (official PE names; on rank 0 under FSDP; collective)."""
        return _strip(full_state(self.parts, self.optimizer)[0], "student.")

    def save_checkpoint(self, path: str) -> None:
        """Every rank gathers, rank 0 writes atomically; the others wait so no rank runs ahead of the file."""
        state = self.state_dict()
        if self.rank == 0:
            atomic_save(state, path)
        if self.world_size > 1:
            torch.distributed.barrier()

    def load_checkpoint(self, path: str) -> None:
        """Resume (every rank reads the file). Another number of ranks is fine if batch_size x ranks is unchanged:
        the samples of a step are numbered globally, so the data and cache position carry over."""
        from pe_dense.models.checkpoint import torch_load_checked

        state = torch_load_checked(path, trusted=True)  # our own file: it pickles numpy's RNG state
        saved, now = dict(state["settings"]), asdict(self.s)
        global_batch = saved["batch_size"] * state.get("world_size", 1)
        if global_batch == now["batch_size"] * self.world_size:
            saved["batch_size"] = now["batch_size"]
        if saved != now:
            diff = {k: (v, now.get(k)) for k, v in saved.items() if now.get(k) != v}
            raise ValueError(f"{path} was written with other settings (checkpoint vs now: {diff}; batch_size x "
                             f"ranks was {global_batch}); resume with the same config or start a new work dir")
        model = {f"student.{k}": v for k, v in state["student"].items()}
        model.update({f"projection.{k}": v for k, v in (state["projection"] or {}).items()})
        load_full_state(self.parts, self.optimizer, model, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
