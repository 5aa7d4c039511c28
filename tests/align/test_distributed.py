"""Distributed alignment on gloo (CPU): two ranks of batch 1 train the same model as one process of batch 2.

Launchers: torchrun (``--launcher pytorch``) and a simulated srun (``--launcher slurm``: the test starts the two
processes itself with the variables srun sets). Strategies: DDP and FSDP2 (student sharded per block).
Tolerance: the ranks' gradients are averaged by all-reduce / reduce-scatter instead of summed in one batch, and
LAMB's norms are summed per shard under FSDP, so float32 round-off differs; measured max |diff| 1.2e-7 after two
steps (values ~1), asserted atol 1e-6 (FSDP) and the looser DDP bound kept from before.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO = os.path.join(ROOT, "configs", "align", "demo_align_tiny.py")
TOOL = os.path.join(ROOT, "tools", "align.py")
TINY = ["settings.image_size=64", "settings.accum_steps=1", "settings.total_steps=2", "sam.points_per_side=4",
        "data.names=[astronaut,coffee,chelsea]", "student.config_overrides.layers=2", "student.drop_path_rate=0.0",
        "teacher.config_overrides.layers=2", "settings.teacher_layer=1"]
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def _env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS and not k.startswith("SLURM_")}
    return dict(env, OMP_NUM_THREADS="1", **(extra or {}))


def _run(args, env_extra=None):
    out = subprocess.run(args, cwd=ROOT, env=_env(env_extra), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(work_dir, *extra):
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
          TOOL, DEMO, "--launcher", "pytorch", "--work-dir", str(work_dir), *extra, "--cfg-options", *TINY,
          "settings.batch_size=1"])


def _srun(work_dir, *extra):
    """What ``srun --ntasks 2 python tools/align.py ... --launcher slurm`` starts on one node."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, TOOL, DEMO, "--launcher", "slurm", "--work-dir", str(work_dir), *extra,
                               "--cfg-options", *TINY, "settings.batch_size=1"], cwd=ROOT, stderr=subprocess.PIPE,
                              text=True, env=_env(dict(SLURM_PROCID=str(r), SLURM_LOCALID=str(r), SLURM_NTASKS="2",
                                                       SLURM_NODELIST="localhost", SLURM_JOB_ID="4242",
                                                       MASTER_PORT=port)))
             for r in range(2)]
    errors = [p.communicate(timeout=900)[1] for p in procs]
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: one process, batch 2, two steps."""
    work = tmp_path_factory.mktemp("one")
    _run([sys.executable, TOOL, DEMO, "--work-dir", str(work), "--cfg-options", *TINY, "settings.batch_size=2"])
    return torch.load(work / "student.pt", weights_only=True)


def _assert_close(path, ref, **tol):
    got = torch.load(path, weights_only=True)
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], msg=k, **tol)


def test_two_gloo_ranks_ddp_equal_one_process_with_the_global_batch(tmp_path, one_process):
    _torchrun(tmp_path / "ddp")
    assert torch.load(tmp_path / "ddp" / "latest.pth", weights_only=False)["step"] == 2
    _assert_close(tmp_path / "ddp" / "student.pt", one_process, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_slurm_ddp_equals_one_process(tmp_path, one_process):
    _srun(tmp_path / "slurm")
    _assert_close(tmp_path / "slurm" / "student.pt", one_process, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # six process launches: ~60 s of CPU, minutes of wall time on a shared 2-core machine
def test_fsdp_under_slurm_checkpoints_full_state_and_resumes_under_torchrun_and_alone(tmp_path, one_process):
    from pe_dense.align.student import spatial_config_from_core
    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer

    _srun(tmp_path / "fsdp", "--strategy", "fsdp", "--max-steps", "1")  # simulated srun, 2 ranks, step 1
    log = (tmp_path / "fsdp" / "align.log").read_text()
    assert "FSDP: 2 block units + root unit" in log  # the per-block wrapping policy ran; rank 0 holds ~half
    held, total = map(int, log.split("this rank holds ")[1].split(" parameters")[0].split(" of "))
    assert total / 2 - 100 < held < total / 2 + 100
    state = torch.load(tmp_path / "fsdp" / "latest.pth", weights_only=False)
    assert state["step"] == 1 and state["strategy"] == "fsdp"
    assert not [f for f in os.listdir(tmp_path / "fsdp") if f.startswith(".tmp_")]  # atomic writes, none left
    official = PEVisionTransformer(spatial_config_from_core(get_config("PE-Core-T16-384").replace(layers=2)))
    full = {k: v.shape for k, v in official.state_dict().items()}
    assert {k: v.shape for k, v in state["student"].items()} == full  # FULL tensors, official names
    assert all(type(v) is torch.Tensor for v in state["student"].values())  # plain tensors, not DTensor shards
    shutil.copytree(tmp_path / "fsdp", tmp_path / "alone")
    _torchrun(tmp_path / "fsdp", "--strategy", "fsdp", "--resume")  # the second step, FSDP under torchrun
    _assert_close(tmp_path / "fsdp" / "student.pt", one_process, rtol=1e-5, atol=1e-6)
    _run([sys.executable, TOOL, DEMO, "--work-dir", str(tmp_path / "alone"), "--resume", "--cfg-options", *TINY,
          "settings.batch_size=2"])  # the FSDP checkpoint resumed in one process
    _assert_close(tmp_path / "alone" / "student.pt", one_process, rtol=1e-5, atol=1e-6)
