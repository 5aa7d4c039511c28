"""Every checkpoint of the corpus through PEVisionTransformer.from_config, PEBackbone, tools/convert_checkpoint.py
(written atomically) and tools/test.py / tools/train.py's early checks: loaded correctly, or one named error."""
import os
import re

import pytest
import torch
from _bad_input_corpus import CHECKPOINT_CASES, TINY, TOWER

from pe_dense.cli import run_cli

BAD = sorted(n for n, e in CHECKPOINT_CASES.items() if e != "ok")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo", "mask_rcnn_pe_t16_demo.py")


def reference_state_dict():
    from pe_dense.models.pe import PEVisionTransformer

    torch.manual_seed(0)  # as the corpus writer built good.pt
    return PEVisionTransformer.from_config(TOWER, **TINY).state_dict()


@pytest.mark.parametrize("name", sorted(n for n, e in CHECKPOINT_CASES.items() if e == "ok"))
def test_good_layouts_load_exactly(corpus, name):
    """Official, timm (.safetensors) and nested/module.-prefixed files give the same weights."""
    from pe_dense.models.pe import PEVisionTransformer

    torch.manual_seed(1)  # a different init, so equality below proves the file was loaded
    model = PEVisionTransformer.from_config(TOWER, checkpoint=os.path.join(corpus["checkpoints"], name), **TINY)
    ref = reference_state_dict()
    assert set(model.state_dict()) == set(ref)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ref[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("name", BAD)
def test_bad_checkpoints_raise_one_named_error(corpus, name):
    from pe_dense.errors import PEDenseError
    from pe_dense.models.pe import PEVisionTransformer

    path = os.path.join(corpus["checkpoints"], name)
    with pytest.raises((PEDenseError, OSError)) as err:
        PEVisionTransformer.from_config(TOWER, checkpoint=path, **TINY)
    assert re.search(CHECKPOINT_CASES[name], str(err.value)) and path in str(err.value)


def test_backbone_names_the_file_of_another_size(corpus):
    from pe_dense.mm import PEBackbone
    from pe_dense.models.checkpoint import CheckpointMismatchError

    path = os.path.join(corpus["checkpoints"], "other_size.pt")
    bb = PEBackbone(model_name=TOWER, checkpoint=path, out_indices=[0], model_overrides=TINY)
    with pytest.raises(CheckpointMismatchError, match=f"checkpoint {re.escape(path)} does not fit"):
        bb.init_weights()


@pytest.mark.parametrize("name, extra, expected", [
    ("truncated.pt", [], "is truncated"),
    ("empty.pt", [], "is empty"),
    ("text.pt", [], "is not a torch file"),
    ("a_directory.pt", [], "is a directory"),
    ("untrusted_pickle.pth", [], "--trusted"),
    ("detectron2_layout.pth", [], "--kind d2-mask-rcnn"),
    ("deta_layout.pth", [], "--kind deta"),
])
def test_convert_tool_refuses_bad_sources(corpus, tool, tmp_path, capsys, name, extra, expected):
    src = os.path.join(corpus["checkpoints"], name)
    assert run_cli(tool("convert_checkpoint").main, [src, str(tmp_path / "out.pth"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and src in err and expected in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_convert_tool_on_good_and_trusted_sources(corpus, tool, tmp_path):
    from safetensors.torch import load_file

    ckpts = corpus["checkpoints"]
    assert run_cli(tool("convert_checkpoint").main, [os.path.join(ckpts, "good_timm.safetensors"),
                                                     str(tmp_path / "official.safetensors")]) == 0
    ref = reference_state_dict()
    out = load_file(str(tmp_path / "official.safetensors"))
    assert set(out) == set(ref) and all(torch.equal(out[k], ref[k]) for k in ref)
    assert run_cli(tool("convert_checkpoint").main, [os.path.join(ckpts, "untrusted_pickle.pth"),
                                                     str(tmp_path / "trusted.pth"), "--trusted"]) == 0
    assert set(torch.load(tmp_path / "trusted.pth", weights_only=True)) == set(ref)


def test_convert_tool_output_checks(corpus, tool, tmp_path, capsys):
    src = os.path.join(corpus["checkpoints"], "good.pt")
    assert run_cli(tool("convert_checkpoint").main, [src, str(tmp_path)]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err
    assert run_cli(tool("convert_checkpoint").main, [src, str(tmp_path / "out.bin")]) == 2
    assert "must end with .pt, .pth or .safetensors" in capsys.readouterr().err


def test_convert_tool_output_is_atomic(corpus, tool, tmp_path, monkeypatch):
    """A failure while writing leaves the previous output intact and no temporary file behind."""
    dst = tmp_path / "out.pth"
    dst.write_bytes(b"previous good file")
    real_save = torch.save

    def crash_half_way(obj, f, *a, **kw):
        real_save(obj, f, *a, **kw)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="No space left"):
        run_cli(tool("convert_checkpoint").main, [os.path.join(corpus["checkpoints"], "good.pt"), str(dst)])
    assert dst.read_bytes() == b"previous good file" and os.listdir(tmp_path) == ["out.pth"]


@pytest.mark.parametrize("name, expected", [("truncated.pt", "is truncated"), ("empty.pt", "is empty"),
                                            ("a_directory.pt", "is a directory"), ("missing.pth", "not found")])
def test_test_and_train_tools_check_the_checkpoint_first(corpus, tool, capsys, name, expected):
    path = os.path.join(corpus["checkpoints"], name)
    assert run_cli(tool("test").main, [CONFIG, path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint ") and path in err and expected in err
    for flag in ("--resume", "--load-from"):
        assert run_cli(tool("train").main, [CONFIG, flag, path]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: checkpoint ") and path in err and expected in err


@pytest.mark.parametrize("name, expected", [("detectron2_layout.pth", "--kind d2-mask-rcnn"),
                                            ("untrusted_pickle.pth", "--trusted"),
                                            ("text.pt", "is not a torch file")])
def test_test_tool_names_foreign_and_untrusted_checkpoints(corpus, tool, tmp_path, capsys, name, expected):
    """These pass the cheap checks; the model is built, then the file is refused before any scoring."""
    path = os.path.join(corpus["checkpoints"], name)
    args = [CONFIG, path, "--work-dir", str(tmp_path), "--cfg-options", f"data_root={corpus['coco']}",
            "test_dataloader.dataset.ann_file=annotations/good.json", "model.backbone.model_overrides.layers=1"]
    assert run_cli(tool("test").main, args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and path in err and expected in err


@pytest.mark.parametrize("kind, expected", [("deta", "unexpected key 'class_embedding' in a DETA checkpoint"),
                                            ("d2-mask-rcnn", "not a detectron2 PE Mask R-CNN checkpoint")])
def test_convert_tool_names_a_tower_given_to_a_detector_converter(corpus, tool, tmp_path, capsys, kind, expected):
    src = os.path.join(corpus["checkpoints"], "good.pt")
    assert run_cli(tool("convert_checkpoint").main, [src, str(tmp_path / "out.pth"), "--kind", kind]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src}: ") and expected in err and os.listdir(tmp_path) == []
