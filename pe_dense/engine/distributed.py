"""One process-group setup for every trainer (mmengine Runner via tools/train.py, the alignment trainer).

Why not ``mmengine.dist.init_dist``: in mmengine 0.10.7 it calls ``torch.cuda.set_device(local_rank)`` for the
``pytorch`` and ``slurm`` launchers whatever the backend, which fails on a machine without a GPU. We initialise
the default process group ourselves *before* the Runner is built; ``Runner.setup_env`` then sees
``is_distributed()`` and skips its own ``init_dist``. Backend: the requested one, but ``gloo`` whenever CUDA is
unavailable (a config's ``dist_cfg=dict(backend='nccl')`` cannot work on CPU); ``nccl`` with CUDA.

Launchers: ``none`` (single process), ``pytorch`` (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), ``slurm`` (srun sets SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST; we derive the torch
variables from them), ``mpi`` (OpenMPI's OMPI_COMM_WORLD_* variables; MASTER_ADDR must be exported).
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from typing import Dict, Mapping, Optional, Tuple

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
DEFAULT_PORT = 29500


def default_backend(requested: Optional[str] = None) -> str:
    """``requested`` if it can work here, else gloo on CPU / nccl on CUDA."""
    import torch

    if not torch.cuda.is_available():
        return "gloo" if requested in (None, "nccl") else requested
    return requested or "nccl"


def first_host(nodelist: str) -> str:
    """First host name of a slurm node list without calling slurm: ``node[07-09,12],gpu3`` -> ``node07``,
    ``rack[1-2]-n[5,6]`` -> ``rack1-n5`` (zero padding kept). Each bracket group is replaced by its first entry."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):  # the first top-level comma ends the first host expression
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    expr = nodelist[:end].strip()
    if not expr or expr.count("[") != expr.count("]"):
        raise ValueError(f"cannot parse SLURM_NODELIST={nodelist!r}; export MASTER_ADDR=<first node's host name>")
    return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0], expr)


def _slurm_first_host(nodelist: str) -> str:
    """``scontrol show hostnames`` when slurm is installed (it knows every syntax), else :func:`first_host`."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            if out:
                return out[0]
        except (subprocess.SubprocessError, OSError):
            pass
    return first_host(nodelist)


def _need(env: Mapping[str, str], names, launcher: str, hint: str) -> None:
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise RuntimeError(f"--launcher {launcher} needs the environment variables {missing}, which are unset; "
                           f"{hint}")


def torch_env_from_slurm(env: Mapping[str, str]) -> Dict[str, str]:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from srun's variables (explicit MASTER_* win).

    MASTER_PORT defaults to one derived from SLURM_JOB_ID (20000 + id % 20000) so that two jobs sharing a node do
    not collide on torch's default port; without a job id it is 29500."""
    _need(env, ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"), "slurm",
          "start the job with srun (sbatch alone runs the script once), or use --launcher pytorch with torchrun")
    rank, ntasks = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    if env.get("SLURM_LOCALID"):
        local_rank = int(env["SLURM_LOCALID"])
    else:  # SLURM_TASKS_PER_NODE looks like "4(x2)"; its first number is the tasks on this node
        per_node = re.match(r"\d+", env.get("SLURM_NTASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "")
        local_rank = rank % int(per_node.group()) if per_node else 0
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    port = env.get("MASTER_PORT") or str(20000 + int(job) % 20000 if job and job.isdigit() else DEFAULT_PORT)
    return dict(RANK=str(rank), WORLD_SIZE=str(ntasks), LOCAL_RANK=str(local_rank),
                MASTER_ADDR=env.get("MASTER_ADDR") or _slurm_first_host(env["SLURM_NODELIST"]), MASTER_PORT=port)


def torch_env_from_mpi(env: Mapping[str, str]) -> Dict[str, str]:
    _need(env, ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "MASTER_ADDR"), "mpi",
          "start with OpenMPI's mpirun and export MASTER_ADDR=<host of rank 0> (-x MASTER_ADDR)")
    return dict(RANK=env["OMPI_COMM_WORLD_RANK"], WORLD_SIZE=env["OMPI_COMM_WORLD_SIZE"],
                LOCAL_RANK=env.get("OMPI_COMM_WORLD_LOCAL_RANK", "0"), MASTER_ADDR=env["MASTER_ADDR"],
                MASTER_PORT=env.get("MASTER_PORT") or str(DEFAULT_PORT))


def init_distributed(launcher: str, backend: Optional[str] = None,
                     timeout: Optional[float] = None) -> Tuple[int, int]:
    """Initialise torch's default process group for ``launcher``; returns ``(rank, world_size)``.

    ``launcher='none'`` returns ``(0, 1)`` without a process group. An already initialised group is reused.
    ``timeout`` is in seconds (as mmengine's ``dist_cfg.timeout``)."""
    import torch
    import torch.distributed as dist

    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; use one of {LAUNCHERS}")
    if launcher == "none":
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launcher == "slurm":
        os.environ.update(torch_env_from_slurm(os.environ))
    elif launcher == "mpi":
        os.environ.update(torch_env_from_mpi(os.environ))
    else:
        _need(os.environ, ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"), "pytorch",
              "start with torchrun --nproc-per-node N ... --launcher pytorch, or use --launcher none")
        os.environ.setdefault("LOCAL_RANK", "0")
    backend = default_backend(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    kwargs = {} if timeout is None else dict(timeout=datetime.timedelta(seconds=timeout))
    dist.init_process_group(backend, init_method="env://", rank=int(os.environ["RANK"]),
                            world_size=int(os.environ["WORLD_SIZE"]), **kwargs)
    return dist.get_rank(), dist.get_world_size()


def _wraps_ddp(wrapper_type) -> bool:
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel

    cls = MODEL_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    return isinstance(cls, type) and issubclass(cls, DistributedDataParallel)


def configure_distributed(cfg) -> None:
    """Make a Runner config with ``launcher != 'none'`` work without GPUs (no-op with CUDA or ``launcher='none'``).

    - ``env_cfg.dist_cfg.backend``: the backend :func:`init_distributed` will use (gloo on CPU), so the logged
      config tells the truth;
    - DDP: mmengine passes ``device_ids=[LOCAL_RANK]``, which torch rejects for a CPU module; on CPU we set
      ``model_wrapper_cfg.device_ids=None`` (torch's value for CPU modules);
    - FSDP (``FlexibleRunner``): mmengine passes ``device_id=LOCAL_RANK`` (a CUDA index); on CPU ``device_id='cpu'``;
    - ``sync_bn`` on CPU is refused here, naming the fix, instead of failing in the first forward.
    """
    import torch
    from mmengine.config import ConfigDict

    if cfg.get("launcher", "none") == "none":
        return
    env_cfg = cfg.setdefault("env_cfg", ConfigDict())
    dist_cfg = env_cfg.setdefault("dist_cfg", ConfigDict())
    dist_cfg["backend"] = default_backend(dist_cfg.get("backend"))
    if torch.cuda.is_available():
        return
    if cfg.get("sync_bn"):
        raise ValueError(f"sync_bn={cfg.sync_bn!r}: SyncBatchNorm (torch's and mmcv's) runs only on GPUs, and this "
                         "machine has none. Remove sync_bn for CPU runs (--cfg-options sync_bn=None); BatchNorm then "
                         "normalises each process's batch separately")
    strategy = cfg.get("strategy")
    if cfg.get("runner_type") == "FlexibleRunner" and isinstance(strategy, dict):
        if strategy.get("type") in ("FSDPStrategy", "PEFSDPStrategy"):
            # torch's FSDP takes CPU only when told (device_id=None raises "needs a non-CPU accelerator")
            strategy.setdefault("model_wrapper", ConfigDict()).setdefault("device_id", "cpu")
        elif strategy.get("type") == "DDPStrategy":
            wrapper = strategy.setdefault("model_wrapper", ConfigDict(type="MMDistributedDataParallel",
                                                                      broadcast_buffers=False))
            wrapper.setdefault("device_ids", None)
        return
    wrapper = cfg.get("model_wrapper_cfg") or ConfigDict(
        type="MMDistributedDataParallel", broadcast_buffers=False,
        find_unused_parameters=cfg.get("find_unused_parameters", False))
    if _wraps_ddp(wrapper.get("type", "MMDistributedDataParallel")):
        wrapper.setdefault("device_ids", None)
    cfg.model_wrapper_cfg = wrapper


def setup_distributed(cfg) -> Tuple[int, int]:
    """:func:`configure_distributed` + :func:`init_distributed` for a Runner config, before the Runner is built
    (mmengine's ``Runner.setup_env`` then finds the process group and does not call its ``init_dist``)."""
    launcher = cfg.get("launcher", "none")
    configure_distributed(cfg)
    dist_cfg = (cfg.get("env_cfg") or {}).get("dist_cfg") or {}
    return init_distributed(launcher, dist_cfg.get("backend"), dist_cfg.get("timeout"))
