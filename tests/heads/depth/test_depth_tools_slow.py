"""End to end through the tools (slow): tools/demo_depth.py trains on the real RGB-D frames and writes pictures;
tools/test.py evaluates its checkpoint with the depth metrics and --show-dir writes photo | prediction | truth."""
import importlib.util
import math
import re
from pathlib import Path

import cv2
import pytest

TOOLS = Path(__file__).resolve().parents[3] / "tools"


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_demo_then_test_tool_with_show_dir(tmp_path, capsys):
    assert _tool("demo_depth").main(["--out-dir", str(tmp_path), "--iters", "40"]) == 0
    printed = capsys.readouterr().out
    rmse = float(re.search(r"depth demo: rmse ([0-9.]+) m", printed).group(1))
    assert math.isfinite(rmse) and rmse < 1.0
    for name in ("arc2017_0", "motorcycle_0"):
        panel = cv2.imread(str(tmp_path / "depth" / f"{name}_depth.png"))
        assert panel.shape == (192, 3 * 256, 3)
    ckpt = next((tmp_path / "work_dirs" / "depth_demo").glob("best_rmse_*.pth"))
    config = TOOLS.parent / "configs" / "demo" / "depth_pe_t16_demo.py"
    show = tmp_path / "show"
    _tool("test").main([str(config), str(ckpt), "--work-dir", str(tmp_path / "test_wd"), "--show-dir", str(show),
                        "--cfg-options", f"data_root={tmp_path / 'demo_depth_data'}/"])
    printed = capsys.readouterr().out
    tested = float(re.search(r"'rmse': ([0-9.]+)", printed).group(1))
    assert tested == pytest.approx(rmse, abs=1e-3)  # the same checkpoint on the same frames
    assert sorted(p.name for p in show.iterdir()) == ["arc2017_0_depth.png", "motorcycle_0_depth.png"]
