"""tools/d2_train.py on the bundled demo photos (configs/d2/mask_rcnn_pe_t16_demo.py, registered as a detectron2
dataset by pe_dense.d2.register_demo_dataset): training, resume, --eval-only with detectron2's COCOEvaluator."""
import importlib.util
import json
import math
import os

import pytest

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIG = os.path.join(REPO, "configs", "d2", "mask_rcnn_pe_t16_demo.py")


def _tool():
    spec = importlib.util.spec_from_file_location("d2_train", os.path.join(REPO, "tools", "d2_train.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _run(tool, out_dir, *extra, layers=1):
    args = tool.parse_args(["--config-file", CONFIG, *[a for a in extra if a.startswith("--")],
                            f"train.output_dir={out_dir}", f"model.backbone.net.model_overrides={{layers:{layers}}}",
                            "model.backbone.net.global_blocks=[0]", "train.eval_period=100000",
                            *[a for a in extra if not a.startswith("--")]])
    return tool.main(args)


def _metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if '"total_loss"' in line]


def _check_coco_results(results):
    assert set(results) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75"} <= set(results[task])
        assert all(math.isnan(v) or 0.0 <= v <= 100.0 for v in results[task].values())


def test_train_resume_and_evaluate(tmp_path, demo_coco, monkeypatch):
    """2 iterations, resume to 3 (the iteration counter continues, checkpoint read back), then evaluation."""
    monkeypatch.setenv("PE_DENSE_CACHE", str(tmp_path / "cache"))
    tool, out = _tool(), str(tmp_path / "run")
    _run(tool, out, "train.max_iter=2", "train.checkpointer.period=2", "train.log_period=1")
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert [m["iteration"] for m in _metrics(out)] == [0, 1]
    _run(tool, out, "--resume", "train.max_iter=3", "train.checkpointer.period=2", "train.log_period=1")
    assert [m["iteration"] for m in _metrics(out)][-1] == 2  # continued, not restarted
    results = _run(tool, out, "--eval-only", f"train.init_checkpoint={os.path.join(out, 'model_final.pth')}")
    _check_coco_results(results)


@pytest.mark.slow
def test_loss_falls_and_coco_evaluation(tmp_path, monkeypatch):
    """40 iterations of a 4-block T on the two photos: the total loss falls (mean of the last 5 logged iterations
    below 0.8 x the first 5), then detectron2's COCO evaluation of the final model."""
    monkeypatch.setenv("PE_DENSE_CACHE", str(tmp_path / "cache"))
    tool, out = _tool(), str(tmp_path / "run")
    _run(tool, out, "train.max_iter=40", "train.checkpointer.period=40", "train.log_period=1", layers=4)
    losses = [m["total_loss"] for m in _metrics(out)]
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    results = _run(tool, out, "--eval-only", f"train.init_checkpoint={os.path.join(out, 'model_final.pth')}",
                   layers=4)
    _check_coco_results(results)


@pytest.mark.slow
def test_two_processes_on_cpu(tmp_path):
    """--num-gpus 2 on a CPU machine: two gloo processes (detectron2's launcher), DDP without device ids."""
    import subprocess
    import sys
    out = str(tmp_path / "run")
    cmd = [sys.executable, os.path.join(REPO, "tools", "d2_train.py"), "--config-file", CONFIG, "--num-gpus", "2",
           f"train.output_dir={out}", "train.max_iter=2", "train.log_period=1", "train.eval_period=100000",
           "model.backbone.net.model_overrides={layers:1}", "model.backbone.net.global_blocks=[0]"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PE_DENSE_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [m["iteration"] for m in _metrics(out)] == [0, 1]
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
