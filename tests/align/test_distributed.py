"""torchrun + DDP on gloo: two ranks of batch 1 train the same model as one process of batch 2."""
import os
import subprocess
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO = os.path.join(ROOT, "configs", "align", "demo_align_tiny.py")
TINY = ["settings.image_size=64", "settings.accum_steps=1", "settings.total_steps=2", "sam.points_per_side=4",
        "data.names=[astronaut,coffee,chelsea]", "student.config_overrides.layers=2", "student.drop_path_rate=0.0",
        "teacher.config_overrides.layers=2", "settings.teacher_layer=1"]


def _run(args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_equal_one_process_with_the_global_batch(tmp_path):
    tool = os.path.join(ROOT, "tools", "align.py")
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
          tool, DEMO, "--launcher", "pytorch", "--work-dir", str(tmp_path / "ddp"), "--cfg-options", *TINY,
          "settings.batch_size=1"])
    _run([sys.executable, tool, DEMO, "--work-dir", str(tmp_path / "one"), "--cfg-options", *TINY,
          "settings.batch_size=2"])
    a = torch.load(tmp_path / "ddp" / "student.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "student.pt", weights_only=True)
    assert torch.load(tmp_path / "ddp" / "latest.pth", weights_only=False)["step"] == 2
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
