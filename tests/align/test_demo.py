"""tools/demo_align.py end to end (slow): both losses fall and the PCA picture is written."""
import os

import pytest


@pytest.mark.slow
def test_demo_both_losses_fall(tmp_path):
    from pe_dense.align.demo import run_demo

    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "align", "demo_align_tiny.py")
    summary = run_demo(config, str(tmp_path), steps=30)
    (core_first, core_last), (loc_first, loc_last) = summary["loss_core"], summary["loss_loc"]
    assert core_last < core_first - 0.05 and loc_last < 0.7 * loc_first
    for name in ("pca_before_after.png", "losses.png", "student.pt", "latest.pth"):
        assert os.path.getsize(tmp_path / name) > 0
