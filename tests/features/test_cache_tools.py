"""The command lines: tools/cache_features.py builds (and resumes) a cache, tools/train.py trains from it."""
import importlib.util
import os

import pytest
import torch
from _feature_cache_tiny import CONFIG

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cache_then_train_from_the_command_line(photo_root, fp32_cache, tmp_path, caplog):
    cache = tmp_path / "cache"
    opts = ["--cfg-options", f"data_root={photo_root}", f"feature_cache.dir={cache}"]
    cache_features = _tool("cache_features")
    cache_features([CONFIG, *opts, "--max-shards", "3"])
    assert sorted(p.name for p in cache.glob("*.npy")) == ["view000_part00000.npy", "view000_part00001.npy",
                                                          "view001_part00000.npy"]
    cache_features([CONFIG, *opts])
    for name in os.listdir(fp32_cache[0]):  # the same bytes as the cache built in-process in one go
        assert (cache / name).read_bytes() == open(os.path.join(fp32_cache[0], name), "rb").read(), name

    _tool("train")([CONFIG, *opts, "--work-dir", str(tmp_path / "work")])
    ckpt = torch.load(tmp_path / "work" / "iter_6.pth", map_location="cpu", weights_only=False)
    keys = ckpt["state_dict"].keys()
    # the backbone keeps its usual names: tools/test.py evaluates this checkpoint with the plain config
    assert "backbone.conv1.weight" in keys and "decode_head.conv_seg.weight" in keys


@pytest.mark.slow
def test_killed_builder_resumes_to_the_same_bytes(photo_root, tmp_path):
    """A real SIGKILL of tools/cache_features.py mid-run, then a rerun, gives the bytes of an uninterrupted build."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from _feature_cache_tiny import tiny_cfg

    from pe_dense.features import build_feature_cache

    shape = {"feature_cache.shard_size": 1, "feature_cache.num_views": 8}  # 32 small shards
    build_feature_cache(tiny_cfg(photo_root, tmp_path / "reference", tmp_path, **shape))
    cache = tmp_path / "killed"
    cmd = [sys.executable, os.path.join(TOOLS, "cache_features.py"), CONFIG, "--cfg-options",
           f"data_root={photo_root}", f"feature_cache.dir={cache}", *(f"{k}={v}" for k, v in shape.items())]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    done = 0
    while proc.poll() is None and done < 2:
        time.sleep(0.01)
        try:
            done = len(json.loads((cache / "manifest.json").read_text())["shards"])
        except (OSError, ValueError):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 32, f"the builder was not interrupted mid-run ({done} shards listed)"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    leftovers = [p for p in cache.iterdir() if p.name.startswith(".tmp_")]
    for p in leftovers:
        p.unlink()
    assert sorted(os.listdir(cache)) == sorted(os.listdir(tmp_path / "reference"))
    for name in os.listdir(cache):
        assert (cache / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
