"""kill -9 of tools/cache_sam_targets.py while it writes its second shard, then a rerun: the cache equals an
uninterrupted build byte for byte; an unfinished or truncated shard is detected and named (issue 14)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import pe_dense.align.target_cache as tc
from pe_dense.align.build import build_images, cache_key
from pe_dense.align.run import cache_from_config, load_config
from pe_dense.align.target_cache import SAMTargetCache
from pe_dense.features.store import FeatureCacheError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO = os.path.join(ROOT, "configs", "align", "demo_align_tiny.py")
TOOL = os.path.join(ROOT, "tools", "cache_sam_targets.py")
TINY = ["settings.image_size=64", "settings.batch_size=2", "settings.accum_steps=1", "sam.points_per_side=4",
        "data.names=[astronaut,coffee]", "sam_cache.shard_size=2"]  # 2 steps x 2 samples = 2 shards
# Runs the tool with the cache's file writer replaced by one that, on the second shard, writes half of the bytes
# to the temporary file (as pe_dense.io does before its rename), signals the test and waits to be killed.
DYING_JOB = """
import os, runpy, sys, time
import pe_dense.align.target_cache as tc
from pe_dense.io import temp_then_replace
marker, real = sys.argv.pop(1), tc.atomic_write
def dies_in_second_shard(path, data):
    if path.endswith("_part00001.npy"):
        with temp_then_replace(path) as tmp, open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            open(marker, "w").close()
            time.sleep(600)
    real(path, data)
tc.atomic_write = dies_in_second_shard
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _options(cache_dir):
    """TINY parsed as the tool's --cfg-options parses it."""
    import argparse

    from mmengine.config import DictAction

    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(["--cfg-options", *TINY, f"sam_cache.dir={cache_dir}"]).cfg_options


def _kill_mid_second_shard(tmp_path, cache_dir):
    script, marker = tmp_path / "dying_job.py", tmp_path / "writing_second_shard"
    script.write_text(DYING_JOB)
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))  # the same arithmetic as this process
    job = subprocess.Popen([sys.executable, str(script), str(marker), TOOL, DEMO, "--steps", "2", "--cfg-options",
                            *TINY, f"sam_cache.dir={cache_dir}"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not marker.exists():
        assert job.poll() is None, job.stderr.read()[-3000:]
        assert time.time() < deadline, "the cache job never reached its second shard"
        time.sleep(0.2)
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    job.stderr.close()
    assert job.returncode == -signal.SIGKILL


def test_killed_cache_job_resumes_to_a_byte_identical_cache(tmp_path, monkeypatch):
    killed, full = tmp_path / "killed", tmp_path / "full"
    _kill_mid_second_shard(tmp_path, killed)
    left = sorted(os.listdir(killed))
    assert [f for f in left if not f.startswith(".tmp_")] == ["manifest.json", "view000_part00000.json",
                                                              "view000_part00000.npy"]
    assert any(f.startswith(".tmp_") and f.endswith("_view000_part00001.npy") for f in left)  # the half write

    cfg = load_config(DEMO, _options(killed))
    key = cache_key(cfg, build_images(cfg.data))
    reader = SAMTargetCache(str(killed), key)
    assert list(reader.manifest["shards"]) == ["view000_part00000"]  # only the complete shard counts
    with pytest.raises(FeatureCacheError, match="sample 2 is beyond the cache.*interrupted.*cache_sam_targets"):
        reader._record(2)
    first = killed / "view000_part00000.npy"  # and a listed shard damaged afterwards (a bad copy) is named
    first.write_bytes(first.read_bytes()[:-100])
    with pytest.raises(FeatureCacheError, match="view000_part00000.npy is truncated.*cache_sam_targets"):
        SAMTargetCache(str(killed), key)._record(0)

    logged = []
    monkeypatch.setattr(tc, "print_log", lambda msg, **kw: logged.append(msg))
    cache_from_config(cfg, num_steps=2, verify=True)  # the rerun
    assert any("view000_part00000.npy is truncated" in m and "recomputing" in m for m in logged)
    assert any(m.startswith("SAM target cache: removing") and ".tmp_" in m for m in logged)
    cache_from_config(load_config(DEMO, _options(full)), num_steps=2)  # uninterrupted
    assert sorted(os.listdir(killed)) == sorted(os.listdir(full))  # no temporary left behind
    for name in os.listdir(full):
        assert (killed / name).read_bytes() == (full / name).read_bytes(), name
