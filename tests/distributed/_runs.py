"""Run tools/train.py as 1 process, under torchrun, or as a simulated srun job; read the checkpoints back."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TRAIN = os.path.join(REPO, "tools", "train.py")
DETA_CFG = os.path.join(HERE, "deta_tiny_sgd.py")
TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(threads: int = 1) -> Dict[str, str]:
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launch and not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


def train_args(config: str, work_dir, data_root: str, batch: int, extra: Sequence[str] = (),
               options: Sequence[str] = ()) -> List[str]:
    return [TRAIN, config, "--work-dir", str(work_dir), *extra, "--cfg-options",
            f"data_root={data_root.rstrip('/')}/", f"train_dataloader.batch_size={batch}", *options]


def _check(procs, logs) -> None:
    for p, log in zip(procs, logs):
        if p.returncode != 0:
            raise AssertionError(f"training process exited with {p.returncode}:\n{log[-4000:]}")


def run_single(args: Sequence[str]) -> str:
    p = subprocess.run([sys.executable, *args], env=base_env(2), capture_output=True, text=True, timeout=TIMEOUT)
    _check([p], [p.stdout + p.stderr])
    return p.stdout + p.stderr


def run_torchrun(args: Sequence[str], nproc: int = 2) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-port", str(free_port()), *args, "--launcher", "pytorch"]
    p = subprocess.run(cmd, env=base_env(1), capture_output=True, text=True, timeout=TIMEOUT)
    _check([p], [p.stdout + p.stderr])
    return p.stdout + p.stderr


def slurm_env(rank: int, ntasks: int, port: int, nodelist: str = "localhost") -> Dict[str, str]:
    """The variables srun sets for task ``rank`` of a one-node job (plus MASTER_PORT, set by job scripts)."""
    env = base_env(1)
    env.update(SLURM_PROCID=str(rank), SLURM_NTASKS=str(ntasks), SLURM_LOCALID=str(rank), SLURM_NODEID="0",
               SLURM_NODELIST=nodelist, SLURM_JOB_NODELIST=nodelist, SLURM_NNODES="1", SLURM_JOB_ID="4242",
               SLURM_TASKS_PER_NODE=str(ntasks), MASTER_PORT=str(port))
    return env


def run_slurm(args: Sequence[str], ntasks: int = 2) -> List[str]:
    """Start ``ntasks`` processes as srun would (no scontrol here: MASTER_ADDR comes from SLURM_NODELIST)."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, *args, "--launcher", "slurm"], env=slurm_env(r, ntasks, port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(ntasks)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    _check(procs, logs)
    return logs


def load_ckpt(path) -> dict:
    from pe_dense.engine import allow_mmengine_checkpoint_types

    allow_mmengine_checkpoint_types()
    return torch.load(str(path), map_location="cpu", weights_only=True)


def max_abs_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor], skip: Optional[Sequence[str]] = ()) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if k not in skip and a[k].numel())
