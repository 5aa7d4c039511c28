"""configs/align (recipe values, schedule arithmetic), tools/align.py and tools/cache_sam_targets.py end to end."""
import importlib.util
import os

import pytest
import torch

from pe_dense.align.run import load_config
from pe_dense.align.settings import AlignSettings

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ALIGN = os.path.join(ROOT, "configs", "align")
TINY = ["settings.image_size=64", "settings.batch_size=2", "settings.accum_steps=1", "settings.total_steps=2",
        "sam.points_per_side=4", "data.names=[astronaut,coffee]", "student.config_overrides.layers=2",
        "teacher.config_overrides.layers=2", "settings.teacher_layer=1"]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_g_recipe_values():
    cfg = load_config(os.path.join(ALIGN, "align_pe_spatial_g14.py"))
    s = AlignSettings(**cfg.settings)
    assert (s.lr, s.betas, s.weight_decay, s.mask_ratio, s.mask_block, s.temperature) == (
        5e-4, (0.9, 0.95), 0.05, 0.75, (2, 2), 20.0)
    assert 8 * s.batch_size * s.accum_steps == 12_288 and s.total_steps == 24_000 and s.teacher_layer == 40
    assert cfg.student.drop_path_rate == 0.4 and cfg.student.ls_init == 0.1 and s.image_size // 14 == 32
    assert (s.aspect, s.brightness, s.saturation, s.flip_p, s.schedule) == ((0.75, 1.33), 0.32, 0.32, 0.5,
                                                                             "constant")


@pytest.mark.parametrize("name,patch", [("t16", 16), ("s16", 16), ("b16", 16), ("l14", 14)])
def test_distill_configs_see_32x32_tokens(name, patch):
    from pe_dense.align.student import build_student

    cfg = load_config(os.path.join(ALIGN, f"distill_pe_spatial_{name}.py"))
    s = AlignSettings(**cfg.settings)
    assert s.mode == "distill" and s.image_size // patch == 32 and s.teacher_image_size // 14 == 32
    st = dict(cfg.student)
    student = build_student(st.pop("core"), st.pop("checkpoint"), ls_init=st.pop("ls_init"),
                            config_overrides=dict(st.pop("config_overrides"), layers=1))
    assert student.pos_grid == 32 and student.cfg.ls_init is None and not student.cfg.use_ln_post


def test_student_from_core_checkpoint_resizes_position_table(tmp_path):
    from pe_dense.align.student import build_student
    from pe_dense.models.pe import PEVisionTransformer

    core = PEVisionTransformer.from_config("PE-Core-T16-384", layers=1)
    torch.save(core.state_dict(), tmp_path / "core.pt")
    student = build_student("PE-Core-T16-384", str(tmp_path / "core.pt"), ls_init=None,
                            config_overrides=dict(layers=1, image_size=512))
    assert student.positional_embedding.shape == (1 + 32 * 32, 192)
    torch.testing.assert_close(student.transformer.resblocks[0].attn.in_proj_weight,
                               core.transformer.resblocks[0].attn.in_proj_weight)
    # official semantics: the stored 32x32 table equals the 24x24 table resized on the fly to a 32x32 grid
    torch.testing.assert_close(student.resized_pos_embed((32, 32)), core.resized_pos_embed((32, 32)))


def test_align_tool_trains_resumes_and_writes_student(tmp_path):
    from pe_dense.models.pe import PEVisionTransformer

    demo = os.path.join(ALIGN, "demo_align_tiny.py")
    opts = TINY
    _tool("align").main([demo, "--work-dir", str(tmp_path / "a"), "--max-steps", "1", "--cfg-options", *opts])
    _tool("align").main([demo, "--work-dir", str(tmp_path / "a"), "--resume", "--cfg-options", *opts])
    _tool("align").main([demo, "--work-dir", str(tmp_path / "b"), "--cfg-options", *opts])
    a = torch.load(tmp_path / "a" / "student.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "student.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(tmp_path / "a" / "latest.pth", weights_only=False)["step"] == 2
    cfg = PEVisionTransformer.from_config("PE-Core-T16-384", layers=2).cfg
    from pe_dense.align.student import spatial_config_from_core
    PEVisionTransformer.from_config(spatial_config_from_core(cfg), checkpoint=str(tmp_path / "a" / "student.pt"))


def test_cache_tool_then_cached_training(tmp_path):
    demo = os.path.join(ALIGN, "demo_align_tiny.py")
    opts = TINY + [f"sam_cache.dir={tmp_path / 'cache'}"]
    _tool("cache_sam_targets").main([demo, "--steps", "2", "--verify", "--cfg-options", *opts])
    assert len(os.listdir(tmp_path / "cache")) == 3  # manifest + one shard (.npy, .json)
    _tool("align").main([demo, "--work-dir", str(tmp_path / "w"), "--cfg-options", *opts])
    online = [o for o in opts if not o.startswith("sam_cache")]
    _tool("align").main([demo, "--work-dir", str(tmp_path / "o"), "--cfg-options", *online])
    a = torch.load(tmp_path / "w" / "student.pt", weights_only=True)
    b = torch.load(tmp_path / "o" / "student.pt", weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)  # fp16 targets: near, not bitwise
