"""Trainer: exact resume, frozen teachers, shared geometry, student export round trip."""
import pytest
import torch

from pe_dense.align.augment import pe_normalise
from pe_dense.align.student import build_student, save_student, spatial_config_from_core
from pe_dense.align.trainer import AlignSettings, AlignTrainer
from pe_dense.models.configs import get_config
from pe_dense.models.pe import PEVisionTransformer

TINY = dict(layers=2)


def _trainer(photos, sam_targets, **kw):
    torch.manual_seed(0)
    student = build_student("PE-Core-T16-384", config_overrides=TINY, drop_path_rate=0.4)
    teacher = PEVisionTransformer.from_config("PE-Core-T16-384", **TINY)
    settings = AlignSettings(**{**dict(image_size=64, batch_size=2, accum_steps=2, teacher_layer=1, total_steps=6,
                                       schedule="cosine"), **kw})
    return AlignTrainer(student, teacher, sam_targets, photos, settings)


def test_resume_equals_uninterrupted_bit_for_bit(photos, sam_targets, tmp_path):
    ref = _trainer(photos, sam_targets)
    ref.train(4)
    interrupted = _trainer(photos, sam_targets)
    interrupted.train(2, checkpoint_path=str(tmp_path / "ckpt.pth"), checkpoint_interval=2)
    torch.manual_seed(123)  # the process dies; a new one starts with other RNG states
    resumed = _trainer(photos, sam_targets)
    resumed.load_checkpoint(str(tmp_path / "ckpt.pth"))
    resumed.train(4)
    assert resumed.step == 4
    for (k, a), b in zip(ref.student.state_dict().items(), resumed.student.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in ref.history[2:]] == [h["loss"] for h in resumed.history]
    assert resumed.scheduler.get_last_lr() == ref.scheduler.get_last_lr()


def test_resume_with_other_settings_is_refused(photos, sam_targets, tmp_path):
    t = _trainer(photos, sam_targets)
    t.save_checkpoint(str(tmp_path / "c.pth"))
    with pytest.raises(ValueError, match="other settings.*lr"):
        _trainer(photos, sam_targets, lr=1e-3).load_checkpoint(str(tmp_path / "c.pth"))


def test_teachers_frozen_and_absent_from_optimizer_and_checkpoint(photos, sam_targets):
    t = _trainer(photos, sam_targets)
    teacher_before = {k: v.clone() for k, v in t.teacher.state_dict().items()}
    t.train(2)
    assert not t.teacher.training and not t.sam_targets.training and not t.sam_targets.sam.training
    for p in list(t.teacher.parameters()) + list(t.sam_targets.parameters()):
        assert not p.requires_grad and p.grad is None
    for k, v in t.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    optimised = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in t.student.parameters()}
    state = t.state_dict()
    assert set(state["student"]) == set(t.student.state_dict())
    n_params = sum(len(v) for v in state["optimizer"]["state"].values())
    assert n_params and len(state["optimizer"]["state"]) == len(list(t.student.parameters()))
    assert not any("sam" in k or "teacher" in k for k in state)


def test_one_augmentation_pass_feeds_all_three_with_own_normalisation(photos, sam_targets, monkeypatch):
    t = _trainer(photos, sam_targets, mask_ratio=0.75)
    seen = {}
    for name, module in (("student", t.student), ("teacher", t.teacher)):
        orig = module.forward_features
        monkeypatch.setattr(module, "forward_features",
                            lambda x, *a, _o=orig, _n=name, **k: (seen.setdefault(_n, x.clone()), _o(x, *a, **k))[1])
    orig_sam = sam_targets.preprocess
    monkeypatch.setattr(sam_targets, "preprocess",
                        lambda v, _o=orig_sam: (seen.setdefault("sam_view", v.clone()), _o(v))[1])
    samples = t.sample_indices(0, 0)
    views, _ = t.views(samples)
    t.losses(views, _, [g for g, _ in samples])
    torch.testing.assert_close(seen["teacher"], pe_normalise(views))  # PE normalisation of the shared view
    torch.testing.assert_close(seen["sam_view"], views)  # SAM gets the same [0, 1] view, normalises itself
    kept = seen["student"] != 0  # the student: the same pixels except the masked patches (zeroed)
    torch.testing.assert_close(seen["student"][kept], seen["teacher"][kept])
    assert (seen["student"] == 0).float().mean().item() == pytest.approx(0.75, abs=0.01)


def test_views_are_reproducible_from_the_step(photos, sam_targets):
    t = _trainer(photos, sam_targets)
    a, keys = t.views(t.sample_indices(3, 1))
    b, keys_b = t.views(t.sample_indices(3, 1))
    assert torch.equal(a, b) and keys == keys_b and keys[0].startswith("sample=")


def test_saved_student_loads_strictly_into_pe_backbone_and_timm(photos, sam_targets, tmp_path):
    import timm

    from pe_dense.mm.backbone import PEBackbone
    from pe_dense.models.checkpoint import official_to_timm

    t = _trainer(photos, sam_targets)
    t.train(1)
    path = str(tmp_path / "student.pt")
    save_student(t.student, path)
    t.student.eval()
    x = pe_normalise(t.views(t.sample_indices(0, 0))[0])
    ref = t.student.forward_features(x, strip_cls_token=True)
    cfg = spatial_config_from_core(get_config("PE-Core-T16-384").replace(**TINY))
    loaded = PEVisionTransformer.from_config(cfg, checkpoint=path, strict=True).eval()
    torch.testing.assert_close(loaded.forward_features(x, strip_cls_token=True), ref, rtol=0, atol=0)
    overrides = dict(layers=2, pool_type="none", use_ln_post=False, output_dim=None, ls_init=0.1)
    bb = PEBackbone(model_name="PE-Core-T16-384", checkpoint=path, model_overrides=overrides, out_indices=[1]).eval()
    bb.init_weights()  # strict load
    torch.testing.assert_close(bb(x)[0].flatten(2).transpose(1, 2), ref, rtol=0, atol=0)
    # timm rescales RoPE positions to its fixed 32-grid reference and resizes position embeddings bicubically:
    # compare in our "timm" mode with that reference (this student's own pretraining grid is 384 / 16 = 24)
    ours_timm_mode = PEVisionTransformer.from_config(cfg, checkpoint=path, rope_mode="timm", rope_ref_size=32,
                                                     pos_embed_resize="bicubic").eval()
    ref_timm = timm.create_model("vit_pe_spatial_tiny_patch16_512", pretrained=False, depth=2, img_size=384,
                                 init_values=0.1, dynamic_img_size=True).eval()
    ref_timm.load_state_dict(official_to_timm(torch.load(path, weights_only=True)), strict=True)
    theirs, ours = ref_timm.forward_features(x)[:, 1:], ours_timm_mode.forward_features(x, strip_cls_token=True)
    assert ((theirs - ours).norm() / ours.norm()).item() < 1e-5


def test_amp_and_distill_mode_run_with_fp32_losses(photos):
    torch.manual_seed(0)
    student = build_student("PE-Core-T16-384", config_overrides=TINY)
    g_teacher = PEVisionTransformer.from_config("PE-Spatial-G14-448", layers=1, width=64, heads=2, mlp_width=64,
                                                patch_size=16)
    t = AlignTrainer(student, g_teacher, None, photos, AlignSettings(
        mode="distill", image_size=64, batch_size=2, temperature=None, w_feat=1.0, amp=True))
    out = t.train_step()
    assert set(out) >= {"loss_pair", "loss_feat", "loss"}
    assert t.projection.weight.shape == (64, 192)
    assert {id(p) for p in t.projection.parameters()} <= {id(p) for g in t.optimizer.param_groups
                                                           for p in g["params"]}


def test_activation_checkpointing_gives_the_same_step(photos, sam_targets):
    plain = _trainer(photos, sam_targets)
    ckpt = _trainer(photos, sam_targets)
    ckpt.student.set_grad_checkpointing(True)
    a, b = plain.train_step(), ckpt.train_step()
    assert a["loss"] == b["loss"]
    for (k, p), q in zip(plain.student.state_dict().items(), ckpt.student.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=k)


def test_truncated_checkpoint_is_named_and_other_global_batch_refused(photos, sam_targets, tmp_path):
    from pe_dense.models.checkpoint import CheckpointReadError

    t = _trainer(photos, sam_targets)
    t.train(1)
    path = tmp_path / "latest.pth"
    t.save_checkpoint(str(path))
    # batch_size x ranks must stay the same (the sample numbering is global); 1 rank x 1 != 1 rank x 2
    with pytest.raises(ValueError, match="other settings.*batch_size.*batch_size x ranks was 2"):
        _trainer(photos, sam_targets, batch_size=1).load_checkpoint(str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # e.g. a copy cut short
    with pytest.raises(CheckpointReadError, match=f"{path}.*truncated"):
        _trainer(photos, sam_targets).load_checkpoint(str(path))
