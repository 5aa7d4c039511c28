"""Run an alignment or distillation config: the body of tools/align.py and tools/cache_sam_targets.py."""
from __future__ import annotations

import os
from typing import Optional

from mmengine.config import Config
from mmengine.logging import MMLogger, print_log

from pe_dense.models.configs import get_config

from .augment import ViewSampler
from .build import build_images, build_parts, build_sam, cache_key
from .settings import AlignSettings
from .student import save_student
from .target_cache import SAMTargetCache, build_target_cache
from .trainer import AlignTrainer

LATEST = "latest.pth"
STUDENT = "student.pt"


def load_config(path: str, options: Optional[dict] = None, work_dir: Optional[str] = None) -> Config:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config {path!r} not found (paths are relative to {os.getcwd()!r})")
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    cfg.work_dir = work_dir or cfg.get("work_dir") or os.path.join("work_dirs", os.path.basename(path)[:-3])
    return cfg


def train_from_config(cfg: Config, resume: bool = False, max_steps: Optional[int] = None) -> AlignTrainer:
    """Train until ``settings.total_steps`` (or ``max_steps``), checkpointing to work_dir/latest.pth; write the
    student in the official PE layout to work_dir/student.pt at the end. torch.distributed, if used, is set up
    by the caller (``pe_dense.engine.distributed.init_distributed``, as tools/train.py does); the config's
    ``strategy`` ('ddp' default, or 'fsdp') says how several ranks share the student."""
    os.makedirs(cfg.work_dir, exist_ok=True)
    # one logger per work dir (mmengine returns an existing instance by name, with its first log file)
    MMLogger.get_instance(f"pe_dense_align:{os.path.abspath(cfg.work_dir)}",
                          log_file=os.path.join(cfg.work_dir, "align.log"))
    trainer = AlignTrainer(**build_parts(cfg), strategy=cfg.get("strategy", "ddp"))
    latest = os.path.join(cfg.work_dir, LATEST)
    if resume and os.path.isfile(latest):
        trainer.load_checkpoint(latest)
        print_log(f"resumed from {latest} at step {trainer.step}", logger="current")
    until = min(trainer.s.total_steps, max_steps) if max_steps else trainer.s.total_steps
    trainer.train(until, checkpoint_path=latest, checkpoint_interval=cfg.get("checkpoint_interval", 500))
    trainer.save_checkpoint(latest)
    student = trainer.student_state_dict()  # collective under FSDP: every rank gathers
    if trainer.rank == 0:
        save_student(student, os.path.join(cfg.work_dir, STUDENT))
        print_log(f"student (official PE layout) -> {os.path.join(cfg.work_dir, STUDENT)}", logger="current")
    return trainer


def cache_from_config(cfg: Config, num_steps: int, world_size: int = 1, verify: bool = False) -> dict:
    """Build (or resume) the SAM target cache of the first ``num_steps`` optimizer steps of the config's run on
    ``world_size`` ranks (samples are numbered globally, so one cache serves any rank)."""
    cache = dict(cfg.get("sam_cache") or {})
    if not cache.get("dir"):
        raise ValueError("set sam_cache.dir (e.g. --cfg-options sam_cache.dir=/cache/sam) to build a target cache")
    s = AlignSettings(**cfg.settings)
    if s.mode != "align":
        raise ValueError(f"settings.mode={s.mode!r}: only align runs use SAM targets")
    images = build_images(cfg.data)
    sampler = ViewSampler(images, s.image_size, s.batch_size, s.accum_steps, s.seed, s.aspect, s.flip_p,
                          s.brightness, s.saturation)
    patch = get_config(cfg.student["core"]).replace(**cfg.student.get("config_overrides", {})).patch_size
    grid = (s.image_size // patch,) * 2
    key = cache_key(cfg, images)
    manifest = build_target_cache(cache["dir"], build_sam(cfg.sam), sampler,
                                  num_steps * s.accum_steps * s.batch_size * world_size, grid, key,
                                  cache.get("shard_size", 256), cache.get("dtype", "float16"))
    if verify:
        SAMTargetCache(cache["dir"], key).verify()
    return manifest
