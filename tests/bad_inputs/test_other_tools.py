"""The remaining entry points on bad paths: a missing config, a directory or a file where the other is expected.
Each ends in one ``error:`` line and status 2, before any training starts."""
import pytest

from pe_dense.cli import run_cli

TOOLS_WITH_CONFIG = ["train", "cache_features"]


@pytest.mark.parametrize("name", TOOLS_WITH_CONFIG)
def test_missing_config(tool, tmp_path, capsys, name):
    missing = str(tmp_path / "no_such_config.py")
    assert run_cli(tool(name).main, [missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config {missing!r} not found") and len(err.splitlines()) == 1


@pytest.mark.parametrize("name", ["demo_detect", "demo_seg", "demo_depth"])
def test_demo_out_dir_that_is_a_file(tool, tmp_path, capsys, name):
    out = tmp_path / "a_file"
    out.write_text("not a folder")
    assert run_cli(tool(name).main, ["--out-dir", str(out), "--iters", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(out) in err and len(err.splitlines()) == 1
    assert out.read_text() == "not a folder"


def test_demo_missing_config(tool, tmp_path, capsys):
    missing = str(tmp_path / "nope.py")
    assert run_cli(tool("demo_seg").main, ["--config", missing, "--out-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: config {missing!r} not found")


def test_track_missing_inputs(tool, tmp_path, capsys):
    base = ["--out-dir", str(tmp_path / "out"), "--model", "PE-Spatial-T16-512", "--cfg-options",
            "model.overrides.layers=1"]
    assert run_cli(tool("track").main, ["--davis", str(tmp_path / "none"), *base]) == 2
    assert "ImageSets" in capsys.readouterr().err
    empty = tmp_path / "frames"
    empty.mkdir()
    assert run_cli(tool("track").main, ["--video", str(empty), "--first-mask", str(tmp_path / "m.png"), *base]) == 2
    assert capsys.readouterr().err.startswith("error: no .jpg/.jpeg/.png frames in")
