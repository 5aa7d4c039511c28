"""Before ``--resume``: name a truncated checkpoint (and the complete one to resume from) instead of torch's
internal zip-reader error, and drop the temporary files a killed checkpoint write left behind.

With the atomic checkpoint backend a kill -9 never leaves a half file under a checkpoint's name, and mmengine writes
``last_checkpoint`` only after the checkpoint itself, so ``--resume`` finds the last complete one. A truncated file
still happens: a checkpoint copied or synced while it was written, a full disk with the plain backend, a config
without ``backend_args=dict(backend='pe_atomic_local')``. mmengine would fail inside ``torch.load`` without the
file's name; we check first.
"""
from __future__ import annotations

import glob
import os
import re
from typing import List, Optional

from mmengine.logging import print_log

TEMP_PREFIX = ".tmp_"  # pe_dense.io.temp_then_replace's temporary files


def resume_checkpoint_path(cfg) -> Optional[str]:
    """The file mmengine's ``Runner`` will resume from: ``load_from``, else the one ``last_checkpoint`` names."""
    if not cfg.get("resume"):
        return None
    if cfg.get("load_from"):
        return cfg.load_from
    pointer = os.path.join(cfg.work_dir, "last_checkpoint")
    if not os.path.isfile(pointer):
        return None  # mmengine starts from scratch (and says so)
    with open(pointer) as f:
        return f.read().strip() or None


def complete_checkpoints(work_dir: str) -> List[str]:
    """``iter_*.pth`` / ``epoch_*.pth`` files in ``work_dir`` that pass the completeness check, newest step first."""
    from pe_dense.models.checkpoint import check_checkpoint_file

    found = []
    for path in glob.glob(os.path.join(work_dir, "*.pth")):
        m = re.fullmatch(r"(iter|epoch)_(\d+)\.pth", os.path.basename(path))
        if not m:
            continue
        try:
            check_checkpoint_file(path)
        except (OSError, ValueError):
            continue
        found.append((int(m.group(2)), path))
    return [p for _, p in sorted(found, reverse=True)]


def check_resume_checkpoint(cfg) -> Optional[str]:
    """Raise, naming the file and the fix, when the checkpoint ``--resume`` would load is missing, empty or
    truncated; remove stale temporary checkpoint files (rank 0). Returns the checkpoint path (None: fresh start)."""
    from mmengine.dist import get_rank

    from pe_dense.models.checkpoint import CheckpointReadError, check_checkpoint_file

    path = resume_checkpoint_path(cfg)
    work_dir = cfg.get("work_dir")
    if work_dir and os.path.isdir(work_dir) and get_rank() == 0:
        for tmp in glob.glob(os.path.join(work_dir, TEMP_PREFIX + "*")):
            print_log(f"removing {tmp}: a checkpoint write that was interrupted", logger="current", level=30)
            os.unlink(tmp)
    if path is None or "://" in path or os.path.isdir(path):  # remote, or FSDP's per-rank 'local' folder
        return path
    try:
        check_checkpoint_file(path)
    except (CheckpointReadError, FileNotFoundError) as err:
        others = [p for p in complete_checkpoints(os.path.dirname(os.path.abspath(path)))
                  if os.path.abspath(p) != os.path.abspath(path)]
        fix = (f"resume from the last complete one: --resume {others[0]}" if others else
               "no complete checkpoint is left beside it: start again without --resume")
        raise CheckpointReadError(f"cannot resume: {err}. Fix: {fix} (and delete or move {path})") from err
    return path
