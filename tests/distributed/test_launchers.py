"""Launcher plumbing: srun variables -> torch's, node-list parsing, backend choice, CPU-safe Runner configs."""
import json
import os
import subprocess
import sys

import pytest
import torch
from _runs import TIMEOUT, free_port, slurm_env
from mmengine.config import Config

from pe_dense.engine.distributed import (
    configure_distributed,
    default_backend,
    first_host,
    init_distributed,
    torch_env_from_slurm,
)

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("nodelist, host", [
    ("localhost", "localhost"),
    ("node07", "node07"),
    ("node[07-09,12]", "node07"),
    ("node[07-09,12],gpu3", "node07"),
    ("gpu3,node[1-2]", "gpu3"),
    ("rack[1-2]-n[005,006]", "rack1-n005"),
    ("a-b-c[10-11]", "a-b-c10"),
])
def test_first_host_of_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_bad_nodelist_names_the_variable_and_the_fix():
    with pytest.raises(ValueError, match="SLURM_NODELIST='node\\[1-2'.*export MASTER_ADDR"):
        first_host("node[1-2")


def test_torch_env_from_srun_variables():
    env = dict(SLURM_PROCID="5", SLURM_NTASKS="8", SLURM_LOCALID="1", SLURM_NODELIST="gpu[3-6]", SLURM_JOB_ID="123457")
    assert torch_env_from_slurm(env) == dict(RANK="5", WORLD_SIZE="8", LOCAL_RANK="1", MASTER_ADDR="gpu3",
                                             MASTER_PORT=str(20000 + 123457 % 20000))
    # explicit MASTER_* win; without SLURM_LOCALID the local rank follows the tasks per node ("4(x2)")
    env = dict(SLURM_PROCID="5", SLURM_NTASKS="8", SLURM_NODELIST="gpu[3-4]", SLURM_TASKS_PER_NODE="4(x2)",
               MASTER_ADDR="head", MASTER_PORT="1234")
    assert torch_env_from_slurm(env) == dict(RANK="5", WORLD_SIZE="8", LOCAL_RANK="1", MASTER_ADDR="head",
                                             MASTER_PORT="1234")
    assert torch_env_from_slurm(dict(SLURM_PROCID="0", SLURM_NTASKS="1", SLURM_NODELIST="n1"))["MASTER_PORT"] == \
        "29500"


def test_missing_launcher_variables_are_named(monkeypatch):
    with pytest.raises(RuntimeError, match=r"--launcher slurm needs .*SLURM_NTASKS.*start the job with srun"):
        torch_env_from_slurm(dict(SLURM_PROCID="0", SLURM_NODELIST="n1"))
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match=r"--launcher pytorch needs .*'RANK'.*torchrun --nproc-per-node"):
        init_distributed("pytorch")
    with pytest.raises(ValueError, match="unknown launcher 'srun'"):
        init_distributed("srun")
    assert init_distributed("none") == (0, 1)


def test_backend_is_gloo_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_backend() == default_backend("nccl") == "gloo"
    assert default_backend("mpi") == "mpi"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_backend() == default_backend("nccl") == "nccl"
    assert default_backend("gloo") == "gloo"


def test_runner_config_made_cpu_safe(monkeypatch):
    """mmengine passes device_ids=[LOCAL_RANK] to DDP and device_id=LOCAL_RANK to FSDP: CUDA indices that torch
    rejects for CPU modules. On CPU the wrappers get torch's CPU values and the backend becomes gloo."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = Config(dict(launcher="slurm", env_cfg=dict(dist_cfg=dict(backend="nccl", timeout=60))))
    configure_distributed(cfg)
    assert cfg.env_cfg.dist_cfg == dict(backend="gloo", timeout=60)
    assert cfg.model_wrapper_cfg == dict(type="MMDistributedDataParallel", broadcast_buffers=False,
                                         find_unused_parameters=False, device_ids=None)
    fsdp = Config(dict(launcher="pytorch", runner_type="FlexibleRunner", strategy=dict(type="PEFSDPStrategy")))
    configure_distributed(fsdp)
    assert fsdp.strategy.model_wrapper.device_id == "cpu" and fsdp.env_cfg.dist_cfg.backend == "gloo"
    with pytest.raises(ValueError, match="sync_bn='torch'.*only on GPUs.*--cfg-options sync_bn=None"):
        configure_distributed(Config(dict(launcher="pytorch", sync_bn="torch")))
    single = Config(dict(launcher="none", env_cfg=dict(dist_cfg=dict(backend="nccl"))))
    configure_distributed(single)
    assert single.env_cfg.dist_cfg.backend == "nccl" and "model_wrapper_cfg" not in single
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = Config(dict(launcher="pytorch", env_cfg=dict(dist_cfg=dict(backend="nccl"))))
    configure_distributed(gpu)
    assert gpu.env_cfg.dist_cfg.backend == "nccl" and "model_wrapper_cfg" not in gpu


def _single_process_reference():
    """The worker's 3 steps in one process with both samples of each batch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(2, 4, generator=data), torch.randn(2, 1, generator=data)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict()


def test_two_processes_from_srun_variables_average_like_one_batch(tmp_path):
    """Two processes given only what srun sets: one gloo group, rank/world from SLURM_PROCID/NTASKS, MASTER_ADDR
    from SLURM_NODELIST; DDP's averaged gradients give the single-process batch-2 weights (rounding only)."""
    port = free_port()
    out = str(tmp_path / "rank0")
    worker = os.path.join(HERE, "_ddp_worker.py")
    procs = [subprocess.Popen([sys.executable, worker, "slurm", out], env=slurm_env(r, 2, port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    info = json.loads(open(out + ".json").read())
    assert info["world"] == 2 and info["backend"] == "gloo"
    assert info["env"] == dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="localhost",
                               MASTER_PORT=str(port))
    got, want = torch.load(out + ".pt"), _single_process_reference()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    # and it is not trivially equal: one rank's sample alone gives other weights
    assert any((got[k] - v).abs().max() > 1e-3 for k, v in _single_sample_run().items())


def _single_sample_run():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(2, 4, generator=data), torch.randn(2, 1, generator=data)
        loss = torch.nn.functional.mse_loss(model(x[:1]), y[:1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict()


