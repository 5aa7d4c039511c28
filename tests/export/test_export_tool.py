"""tools/export.py: a full-depth T export from the command line, and the refusals."""
import importlib.util
import json
import logging
import os

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _tool():
    spec = importlib.util.spec_from_file_location("export_tool", os.path.join(ROOT, "tools", "export.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_exports_full_t_with_random_init_warning(tmp_path, caplog):
    import onnxruntime as ort

    with caplog.at_level(logging.WARNING):
        _tool().main(["--model-name", "PE-Spatial-T16-512", "--layers", "5", "-1", "--size", "32", "48",
                      "--batch", "1", "--out", str(tmp_path)])
    assert "RANDOM weights" in caplog.text
    path = tmp_path / "PE-Spatial-T16-512_32x48_fp32.onnx"
    meta = json.loads((tmp_path / "PE-Spatial-T16-512_32x48_fp32.json").read_text())
    assert meta["layers"] == [5, 11] and meta["batch"] == 1 and meta["input_shape"] == [1, 3, 32, 48]
    outs = ort.InferenceSession(str(path)).run(None, {"images": np.zeros((1, 3, 32, 48), np.float32)})
    assert [o.shape for o in outs] == [(1, 192, 2, 3)] * 2


@pytest.mark.parametrize("args, error, message", [
    (["--size", "70", "100"], SystemExit, "not a multiple of the patch size 16"),
    (["--size", "64", "64", "--batch", "0"], SystemExit, "--batch must be a positive integer or 'dynamic'"),
    (["--size", "64", "64", "--layers", "12"], ValueError, r"layers \[12\] not valid for the 12-block .* give block"),
    (["--size", "64", "64", "--layers", "11", "-1"], ValueError, "same block twice"),
])
def test_cli_refusals_say_what_to_do(tmp_path, args, error, message):
    with pytest.raises(error, match=message):
        _tool().main(["--model-name", "PE-Spatial-T16-512", "--out", str(tmp_path), *args])
    assert not os.listdir(tmp_path)


def test_trt_build_skips_without_gpu_and_builds_nothing(tmp_path):
    """The TensorRT recipe needs a GPU and trtexec; here it must say SKIPPED, exit 77 and write no engine."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") and shutil.which("trtexec"):
        pytest.skip("a GPU with TensorRT is present: run tools/trt_build.sh for real")
    onnx_path, meta = tmp_path / "m.onnx", tmp_path / "m.json"
    onnx_path.write_bytes(b"")
    meta.write_text("{}")
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "trt_build.sh"), str(onnx_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 77 and "SKIPPED" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.onnx"]


def test_cli_exports_the_mask_rcnn_demo_config():
    """CONFIG CHECKPOINT mode on the (shrunk) demo Mask R-CNN config writes the .onnx and the .json beside it."""
    from _mask_rcnn_export_tiny import MAX_DETS, SIZE, cli_artefact

    path, out = cli_artefact()
    assert sorted(f for f in os.listdir(out) if not f.endswith(".pth")) == [
        "mask_rcnn_pe_t16_demo_256x256_fp32.json", "mask_rcnn_pe_t16_demo_256x256_fp32.onnx"]
    meta = json.loads(open(path[:-5] + ".json").read())
    assert meta["task"] == "instance-segmentation" and meta["input_shape"] == ["batch", 3, *SIZE]
    assert meta["outputs"]["boxes"] == ["batch", MAX_DETS, 4] and meta["box_format"] == "xyxy"
    # provenance: the config and the hash of the checkpoint the artefact was made from
    from pe_dense.features.store import sha256_file
    assert meta["config"] == "mask_rcnn_pe_t16_demo.py"
    assert meta["weights"] == "sha256:" + sha256_file(os.path.join(out, "tiny.pth"))


@pytest.mark.parametrize("args, message", [
    (["--size", "272", "256"], "not a multiple of the coarsest pyramid stride 64.*Export at 320x256"),
    (["--size", "256", "256", "--model-name", "PE-Spatial-T16-512"], "either a detector CONFIG CHECKPOINT or"),
    (["--size", "256", "256", "--max-dets", "0"], "--max-dets must be positive"),
])
def test_cli_detector_refusals_say_what_to_do(tmp_path, args, message):
    from _mask_rcnn_export_tiny import DEMO_CONFIG

    with pytest.raises(SystemExit, match=message):
        _tool().main([DEMO_CONFIG, "random", "--out", str(tmp_path), "--cfg-options",
                      "model.backbone.model_overrides.layers=1", *args])
    assert not os.listdir(tmp_path)


def test_cli_detector_needs_a_checkpoint_and_something_to_export(tmp_path):
    from _mask_rcnn_export_tiny import DEMO_CONFIG

    with pytest.raises(SystemExit, match="needs its CHECKPOINT after the CONFIG"):
        _tool().main([DEMO_CONFIG, "--size", "256", "256", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="nothing to export"):
        _tool().main(["--size", "256", "256", "--out", str(tmp_path)])
