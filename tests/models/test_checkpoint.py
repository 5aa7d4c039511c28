"""Checkpoint formats, layouts and the mismatch error."""
import argparse

import pytest
import torch

from pe_dense.io import atomic_save
from pe_dense.models.checkpoint import (
    CheckpointMismatchError,
    guess_config,
    load_pe_checkpoint,
    load_state_dict_file,
    official_to_timm,
    timm_to_official,
)
from pe_dense.models.pe import PEVisionTransformer


def _model(name="PE-Spatial-T16-512", layers=2):
    return PEVisionTransformer.from_config(name, layers=layers)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("name", ["PE-Spatial-T16-512", "PE-Spatial-G14-448", "PE-Core-S16-384"])
def test_official_timm_round_trip(name):
    sd = _model(name, 1).state_dict()
    timm_sd = official_to_timm(sd)
    assert "patch_embed.proj.weight" in timm_sd and not any(k.startswith("transformer.") for k in timm_sd)
    _same(timm_to_official(timm_sd), sd)


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {"model": {f"visual.{k}": v for k, v in sd.items()} | {"text.token_embedding": torch.zeros(3)}},
    lambda sd: {"weights": sd},
    lambda sd: official_to_timm(sd),
])
@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_file_formats_and_wrappers_load_exactly(tmp_path, wrap, ext):
    m = _model()
    obj = wrap(m.state_dict())
    if ext == ".safetensors":
        obj = obj.get("state_dict", obj.get("model", obj.get("weights", obj)))
    path = str(tmp_path / f"ckpt{ext}")
    atomic_save(obj, path)
    fresh = PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=2, checkpoint=path)
    _same(fresh.state_dict(), m.state_dict())


def test_wrong_checkpoint_error_lists_everything(tmp_path):
    path = str(tmp_path / "s.pt")
    torch.save(_model("PE-Spatial-S16-512", 3).state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as err:
        PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=2, checkpoint=path)
    msg = str(err.value)
    assert "unexpected keys (12)" in msg and "transformer.resblocks.2." in msg
    assert "mis-shaped keys" in msg and "conv1.weight (384, 3, 16, 16) vs (192, 3, 16, 16)" in msg
    assert "looks like PE-Spatial-S16-512" in msg


def test_missing_keys_are_listed(tmp_path):
    sd = _model().state_dict()
    sd.pop("ln_pre.weight")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): ln_pre.weight"):
        load_pe_checkpoint(_model(), sd)


def test_guess_config_by_shapes():
    assert guess_config(_model("PE-Spatial-G14-448", 1).state_dict()).name in ("PE-Spatial-G14-448",)
    assert guess_config(_model("PE-Core-B16-224", 12).state_dict()).name == "PE-Core-B16-224"


def test_missing_file_and_pickles_need_trust(tmp_path):
    with pytest.raises(FileNotFoundError, match="local files"):
        load_state_dict_file(str(tmp_path / "nope.pt"))
    path = str(tmp_path / "train.pth")
    # a pickled non-tensor object, as in DETA's training checkpoints
    torch.save({"model": _model().state_dict(), "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(RuntimeError, match="trusted=True"):
        load_state_dict_file(path)
    assert "conv1.weight" in load_state_dict_file(path, trusted=True)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError):
        atomic_save({"a": torch.zeros(2), "b": "not a tensor"}, str(path))
    assert not path.exists() and list(tmp_path.iterdir()) == []
