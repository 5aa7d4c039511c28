"""The detectron2-hosted PE tower (``PEViTDetNet``) against ``PEVisionTransformer`` and against timm's port.

The released detectors' structure: no cls token, LayerScale, windows of 32 tokens with global blocks, the 32x32
position grid tiled over a 64x64 token grid (1024 px), RoPE ``window`` positions. Here on T width (192) with
``use_cls_token=False, ls_init=0.1`` so that three implementations run in a second or two.

timm's Eva has no windows and no tiling; the reference builds them from timm's own modules: its patch conv, its
``pos_embed`` tiled by hand, and each windowed block run by timm on the windows as a batch (LayerNorm and MLP act
per token, so that is window attention), with timm's RoPE for a 32x32 grid; global blocks get timm's RoPE for
64x64. timm's positions ((i + 1) / n * 32) are the detection code's (i / n * 32 + 1) shifted by a constant, to
which attention is invariant (RoPE depends on position differences only).
"""
import pytest
import torch

from pe_dense.d2 import PEViTDetNet, get_pe_lr_decay_rate
from pe_dense.models.checkpoint import official_to_timm
from pe_dense.models.pe import PEVisionTransformer

OVERRIDES = dict(layers=2, use_cls_token=False, ls_init=0.1)
SETTINGS = dict(rope_mode="window", pos_embed_resize="tile", window_size=32, global_blocks=(1,),
                window_padding="zeros")


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    d2_net = PEViTDetNet("PE-Spatial-T16-512", img_size=1024, window_size=32, global_blocks=(1,),
                         model_overrides=OVERRIDES).eval()
    with torch.no_grad():  # LayerScale 0.1 would hide most of the blocks' work; make it count
        for blk in d2_net.blocks:
            blk.ls_1.gamma.uniform_(0.5, 1.5)
            blk.ls_2.gamma.uniform_(0.5, 1.5)
    plain = PEVisionTransformer.from_config("PE-Spatial-T16-512", **OVERRIDES, **SETTINGS).eval()
    sd = {k: v for k, v in d2_net.state_dict().items() if not (k.startswith("rope_") or ".attn.rope." in k)}
    sd["positional_embedding"] = sd["positional_embedding"][0]
    plain.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    return d2_net, plain, x


def timm_windowed_reference(plain, x):
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_pe_spatial_tiny_patch16_512", pretrained=False, depth=2, class_token=False,
                            init_values=0.1, dynamic_img_size=True).eval()
    ref.load_state_dict(official_to_timm(plain.state_dict()), strict=True)
    b, c = x.shape[0], ref.embed_dim
    tokens = ref.patch_embed.proj(x).flatten(2).transpose(1, 2)  # (B, 64*64, C)
    tiled = ref.pos_embed.reshape(1, 32, 32, c).tile(1, 2, 2, 1).reshape(1, 64 * 64, c)
    t = ref.norm_pre(tokens + tiled)
    for i, blk in enumerate(ref.blocks):
        if i == 0:  # windowed: 2x2 windows of 32x32 tokens, run as a batch of 4
            w = t.view(b, 2, 32, 2, 32, c).permute(0, 1, 3, 2, 4, 5).reshape(b * 4, 32 * 32, c)
            w = blk(w, rope=ref.rope.get_embed(shape=(32, 32)))
            t = w.view(b, 2, 2, 32, 32, c).permute(0, 1, 3, 2, 4, 5).reshape(b, 64 * 64, c)
        else:
            t = blk(t, rope=ref.rope.get_embed(shape=(64, 64)))
    return t.transpose(1, 2).reshape(b, c, 64, 64)


@torch.no_grad()
def test_d2_net_equals_pe_tower_and_timm(nets):
    d2_net, plain, x = nets
    out = d2_net(x)
    assert list(out) == ["last_feat"] and out["last_feat"].shape == (1, 192, 64, 64)
    want = plain.forward_intermediates(x, indices=[-1], output_fmt="NCHW")[0]
    torch.testing.assert_close(out["last_feat"], want, rtol=0, atol=0)  # the same code and weights
    ref = timm_windowed_reference(plain, x)
    err = (out["last_feat"] - ref).abs().max() / ref.abs().max()
    assert err < 1e-5, f"relative error to timm {err:.2e}"
    # windows matter: the all-global tower differs (so the reference really checks the windowed block)
    glob = PEVisionTransformer.from_config("PE-Spatial-T16-512", **OVERRIDES, **dict(SETTINGS, window_size=0)).eval()
    glob.load_state_dict(plain.state_dict())
    assert (glob.forward_intermediates(x, indices=[-1])[0] - ref).abs().max() / ref.abs().max() > 1e-2


def test_detectron2_contract(nets):
    d2_net = nets[0]
    shape = d2_net.output_shape()["last_feat"]
    assert (shape.channels, shape.stride) == (192, 16)
    assert d2_net.size_divisibility == 16 and d2_net.padding_constraints == {"size_divisibility": 16}
    from detectron2.modeling import Backbone, SimpleFeaturePyramid
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool
    assert isinstance(d2_net, Backbone) and isinstance(d2_net, PEVisionTransformer)
    sfp = SimpleFeaturePyramid(d2_net, "last_feat", 32, (4.0, 2.0, 1.0, 0.5), LastLevelMaxPool(), "LN", 1024)
    assert {k: (v.channels, v.stride) for k, v in sfp.output_shape().items()} == {
        f"p{i}": (32, 2 ** i) for i in range(2, 7)}


def test_position_embedding_keeps_the_release_shape_and_round_trips(nets):
    d2_net = nets[0]
    sd = d2_net.state_dict()
    assert sd["positional_embedding"].shape == (1, 1024, 192)  # released layout [1, N, W]
    assert d2_net.positional_embedding.shape == (1024, 192)    # the tower's parameter
    fresh = PEViTDetNet("PE-Spatial-T16-512", img_size=1024, global_blocks=(1,), model_overrides=OVERRIDES)
    assert not fresh.load_state_dict(sd, strict=True).missing_keys
    assert torch.equal(fresh.positional_embedding, d2_net.positional_embedding)


def test_rope_tables_are_metas_formula_and_mismatches_are_refused(nets):
    """The stored tables equal Meta's VisionRotaryEmbeddingFast computed by hand in float32: positions
    arange(n) / n * 32 + 1, frequencies 10000 ** (-2k / 32) (head_dim 64 -> half 32), each repeated twice,
    [x | y] halves, rows in (y, x) order."""
    d2_net = nets[0]

    def meta_table(n):
        t = torch.arange(n) / n * 32 + 1
        f = 1.0 / (10000 ** (torch.arange(0, 32, 2)[:16].float() / 32))
        a = (t[:, None] * f).repeat_interleave(2, dim=-1)  # (n, 32)
        ang = torch.cat([a[None, :, :].expand(n, n, -1), a[:, None, :].expand(n, n, -1)], dim=-1)
        return ang.cos().reshape(-1, 64), ang.sin().reshape(-1, 64)

    for module, n in ((d2_net.rope_win, 32), (d2_net.rope_glb, 64)):
        cos, sin = meta_table(n)
        torch.testing.assert_close(module.freqs_cos, cos, atol=2e-5, rtol=0)
        torch.testing.assert_close(module.freqs_sin, sin, atol=2e-5, rtol=0)
    assert d2_net.blocks[0].attn.rope is d2_net.rope_win and d2_net.blocks[1].attn.rope is d2_net.rope_glb
    bad = d2_net.state_dict()
    bad["rope_glb.freqs_cos"] = bad["rope_glb.freqs_cos"] + 0.01
    with pytest.raises(RuntimeError, match="img_size, window_size or rope_ref_size"):
        PEViTDetNet("PE-Spatial-T16-512", global_blocks=(1,), model_overrides=OVERRIDES).load_state_dict(bad)


def test_pe_tower_file_loads_into_the_d2_net(nets, tmp_path):
    plain = nets[1]
    path = str(tmp_path / "tower.pt")
    torch.save(plain.state_dict(), path)
    net = PEViTDetNet("PE-Spatial-T16-512", path, global_blocks=(1,), model_overrides=OVERRIDES)
    assert torch.equal(net.blocks[1].mlp.c_fc.weight, plain.blocks[1].mlp.c_fc.weight)
    assert torch.equal(net.positional_embedding, plain.positional_embedding)


def test_lr_decay_rule_is_the_release_rule():
    """get_vit_lr_decay_rate_pev1: embeddings rate ** (n + 1), block i rate ** (n - i), the rest 1."""
    r, n = 0.9, 50
    assert get_pe_lr_decay_rate("backbone.net.conv1.weight", r, n) == pytest.approx(r ** 51)
    assert get_pe_lr_decay_rate("backbone.net.positional_embedding", r, n) == pytest.approx(r ** 51)
    assert get_pe_lr_decay_rate("backbone.net.transformer.resblocks.0.ln_1.weight", r, n) == pytest.approx(r ** 50)
    assert get_pe_lr_decay_rate("backbone.net.transformer.resblocks.49.mlp.c_fc.bias", r, n) == pytest.approx(r)
    assert get_pe_lr_decay_rate("backbone.simfp_2.0.weight", r, n) == 1.0
    assert get_pe_lr_decay_rate("roi_heads.box_head.fc1.weight", r, n) == 1.0
