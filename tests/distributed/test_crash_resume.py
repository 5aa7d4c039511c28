"""kill -9 mid-training and mid-checkpoint-write, then --resume: the run ends bit-identical to an uninterrupted one;
a truncated checkpoint is named (with the checkpoint to resume from), never loaded.

All runs are single processes with the same thread count (float reductions depend on it), so "identical" means
torch.equal on every parameter and optimizer buffer. The kill points are made deterministic by _crash_hooks.py.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from _runs import DETA_CFG, HERE, TRAIN, base_env, load_ckpt, train_args

CRASH_CFG = os.path.join(HERE, "deta_tiny_crash.py")


def _env(**extra):
    env = base_env(2)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _kill_when(marker, args, **env):
    """Start a training process, SIGKILL it as soon as ``marker`` exists; returns its output."""
    proc = subprocess.Popen([sys.executable, *args], env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 900
    while not os.path.exists(marker):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"the run ended before reaching {marker}:\n{proc.communicate()[0][-4000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL
    return out


def _resume(work, demo_data):
    p = subprocess.run([sys.executable, *train_args(CRASH_CFG, work, demo_data, batch=2, extra=["--resume"])],
                       env=_env(), capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]


def _assert_identical(a_path, b_path):
    a, b = load_ckpt(a_path), load_ckpt(b_path)
    assert a["meta"]["iter"] == b["meta"]["iter"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    for pid in sa:
        for name in sa[pid]:
            assert torch.equal(torch.as_tensor(sa[pid][name]), torch.as_tensor(sb[pid][name])), (pid, name)


@pytest.fixture(scope="module")
def uninterrupted(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("uninterrupted")
    p = subprocess.run([sys.executable, *train_args(CRASH_CFG, work, demo_data, batch=2)], env=_env(),
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return work


@pytest.mark.slow
def test_kill_mid_training_then_resume_is_bit_identical(uninterrupted, demo_data, tmp_path):
    """SIGKILL after iteration 3 (iter_2.pth written, iteration 3's update only in memory)."""
    _kill_when(tmp_path / "paused", train_args(CRASH_CFG, tmp_path, demo_data, batch=2), PE_TEST_PAUSE_AT="3")
    assert (tmp_path / "iter_2.pth").exists() and not (tmp_path / "iter_4.pth").exists()
    _resume(tmp_path, demo_data)
    _assert_identical(uninterrupted / "iter_4.pth", tmp_path / "iter_4.pth")


@pytest.mark.slow
def test_kill_mid_checkpoint_write_keeps_the_previous_checkpoint(uninterrupted, demo_data, tmp_path):
    """SIGKILL inside the atomic write of iter_4.pth: only a temporary file exists, iter_2.pth and last_checkpoint
    are intact, --resume removes the leftover, continues from iteration 2 and ends bit-identical."""
    _kill_when(tmp_path / "stalled", train_args(CRASH_CFG, tmp_path, demo_data, batch=2),
               PE_TEST_STALL_ON="iter_4.pth")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp_")]
    assert len(leftovers) == 1 and leftovers[0].endswith("iter_4.pth"), sorted(os.listdir(tmp_path))
    assert not (tmp_path / "iter_4.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text().strip().endswith("iter_2.pth")
    _assert_identical(uninterrupted / "iter_2.pth", tmp_path / "iter_2.pth")
    _resume(tmp_path, demo_data)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp_")]
    _assert_identical(uninterrupted / "iter_4.pth", tmp_path / "iter_4.pth")


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _fake_work_dir(tmp_path):
    """A work dir with complete iter_2/iter_4 checkpoints (tiny torch zip files) and last_checkpoint -> iter_4."""
    for n in (2, 4):
        torch.save({"meta": {"iter": n}, "state_dict": {"w": torch.zeros(1000)}}, tmp_path / f"iter_{n}.pth")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_4.pth"))
    return tmp_path


def test_truncated_latest_checkpoint_is_named_on_resume(tmp_path):
    from mmengine.config import Config

    from pe_dense.engine.resume_checks import check_resume_checkpoint
    from pe_dense.models.checkpoint import CheckpointReadError

    work = _fake_work_dir(tmp_path)
    cfg = Config(dict(resume=True, load_from=None, work_dir=str(work)))
    assert check_resume_checkpoint(cfg) == str(work / "iter_4.pth")
    _truncate(work / "iter_4.pth")
    (work / ".tmp_abc_iter_6.pth").write_bytes(b"half")
    with pytest.raises(CheckpointReadError) as err:
        check_resume_checkpoint(cfg)
    msg = str(err.value)
    assert f"{work / 'iter_4.pth'} is truncated" in msg and f"--resume {work / 'iter_2.pth'}" in msg
    assert not (work / ".tmp_abc_iter_6.pth").exists(), "an interrupted write's temporary file is removed"
    # an explicit --resume CKPT is checked the same way; nothing left to resume from says so
    _truncate(work / "iter_2.pth")
    with pytest.raises(CheckpointReadError, match="iter_2.pth is truncated.*start again without --resume"):
        check_resume_checkpoint(Config(dict(resume=True, load_from=str(work / "iter_2.pth"), work_dir=str(work))))
    # FSDP's 'local' checkpoints are folders of per-rank files: left to mmengine
    (work / "iter_8.pth").mkdir()
    folder = Config(dict(resume=True, load_from=str(work / "iter_8.pth"), work_dir=str(work)))
    assert check_resume_checkpoint(folder) == str(work / "iter_8.pth")
    # not resuming, or nothing saved yet: nothing to check
    assert check_resume_checkpoint(Config(dict(resume=False, load_from=None, work_dir=str(work)))) is None
    assert check_resume_checkpoint(Config(dict(resume=True, load_from=None, work_dir=str(tmp_path / "new")))) is None


def test_train_tool_refuses_a_truncated_checkpoint_with_one_message(demo_data, tmp_path, capsys):
    """tools/train.py --resume (auto) whose last_checkpoint names a truncated file: exit status 2, one message that
    names the file and the checkpoint to resume from, no traceback, nothing trained."""
    import importlib.util

    from pe_dense.cli import run_cli

    spec = importlib.util.spec_from_file_location("_tool_train", TRAIN)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    work = _fake_work_dir(tmp_path)
    _truncate(work / "iter_4.pth", keep=0.9)
    assert run_cli(tool.main, train_args(DETA_CFG, work, demo_data, batch=2, extra=["--resume"])[1:]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    assert f"{work / 'iter_4.pth'} is truncated" in err and f"--resume {work / 'iter_2.pth'}" in err
    assert not list(work.glob("*/vis_data")), "nothing was trained"
