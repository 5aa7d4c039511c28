"""Behaviour of the vision tower: configs, layouts, windows, checkpointing, intermediates, input checks."""
import pytest
import torch

from pe_dense.models.blocks import PEAttention
from pe_dense.models.configs import PE_CONFIGS
from pe_dense.models.pe import PEVisionTransformer
from pe_dense.models.rope import apply_rope, rope_pairs, rope_table


@pytest.mark.parametrize("name", list(PE_CONFIGS))
def test_every_config_builds_with_official_keys(name):
    cfg = PE_CONFIGS[name]
    m = PEVisionTransformer.from_config(name, layers=1)
    keys = set(m.state_dict())
    assert m.conv1.weight.shape == (cfg.width, 3, cfg.patch_size, cfg.patch_size) and m.conv1.bias is None
    assert m.positional_embedding.shape == (cfg.num_prefix_tokens + cfg.grid_size ** 2, cfg.width)
    assert m.blocks[0].mlp.c_fc.weight.shape == (cfg.mlp_width, cfg.width)
    assert ("class_embedding" in keys) == cfg.use_cls_token
    assert ("transformer.resblocks.0.ls_1.gamma" in keys) == (cfg.ls_init is not None)
    assert ("attn_pool.attn.in_proj_weight" in keys) == (cfg.pool_type == "attn")
    assert ("ln_post.weight" in keys) == cfg.use_ln_post
    assert cfg.grid_size == 32 or not name.startswith("PE-Spatial")
    assert "transformer.resblocks.0.attn.in_proj_weight" in keys
    assert not any("rope" in k for k in keys)


def test_core_forward_pools_and_projects(real_image):
    m = PEVisionTransformer.from_config("PE-Core-T16-384", layers=2).eval()
    out = m(real_image(size=(384, 384)))
    assert out.shape == (1, 512)
    tokens = m.forward_features(real_image(size=(384, 384)), norm=True)
    torch.testing.assert_close(out, m.attn_pool(tokens).squeeze(1) @ m.proj)


def _brute_window_attention(attn, x, rope, grid, window, p):
    """Global attention with a mask: tokens see only their own window (and the prefix); prefix sees all."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    win = (ys // window * 1000 + xs // window).flatten()
    allowed = win[:, None] == win[None, :]
    full = torch.ones(p + gh * gw, p + gh * gw, dtype=torch.bool)
    full[p:, p:] = allowed
    b, n, c = x.shape
    qkv = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = apply_rope(q, rope), apply_rope(k, rope)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=full)
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, c))


@pytest.mark.parametrize("prefix,grid,window", [(0, (8, 8), 4), (1, (6, 10), 4), (1, (5, 7), 3)])
def test_windowed_attention_equals_block_diagonal_masking(prefix, grid, window):
    attn = PEAttention(64, 4)
    x = torch.randn(2, prefix + grid[0] * grid[1], 64)
    rope = rope_pairs(*rope_table(grid, 16, mode="official", ref_size=32, num_prefix=prefix))
    got = attn(x, rope, grid, window, prefix)
    want = _brute_window_attention(attn, x, rope, grid, window, prefix)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, attn(x, rope, grid, 0, prefix), atol=1e-3)


@pytest.mark.parametrize("name,size,window", [("PE-Spatial-T16-512", (256, 320), 20),
                                              ("PE-Spatial-G14-448", (224, 224), 16)])
def test_window_covering_the_grid_equals_global(name, size, window, real_image):
    x = real_image(size=size)
    glob = PEVisionTransformer.from_config(name, layers=2).eval()
    win = PEVisionTransformer.from_config(name, layers=2, window_size=window, global_blocks=[1]).eval()
    win.load_state_dict(glob.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(win.forward_features(x), glob.forward_features(x), atol=1e-5, rtol=1e-5)


def test_global_blocks_and_drop_path_schedule():
    m = PEVisionTransformer.from_config("PE-Spatial-T16-512", window_size=8, global_blocks=[2, 5, 8, -1],
                                        drop_path_rate=0.3)
    assert [b.window for b in m.blocks] == [8, 8, 0, 8, 8, 0, 8, 8, 0, 8, 8, 0]
    rates = [b.drop_path.p for b in m.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.3)
    assert all(b - a == pytest.approx(0.3 / 11) for a, b in zip(rates, rates[1:]))


def test_drop_path_is_active_only_in_training(real_image):
    m = PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=2, drop_path_rate=0.9)
    x = real_image(size=(64, 64)).repeat(4, 1, 1, 1)
    m.train()
    a, b = m.forward_features(x), m.forward_features(x)
    assert not torch.allclose(a, b)
    m.eval()
    torch.testing.assert_close(m.forward_features(x), m.forward_features(x))


def test_activation_checkpointing_gives_the_same_gradients(real_image):
    x = real_image(size=(128, 96))
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        m = PEVisionTransformer.from_config("PE-Spatial-S16-512", layers=3, window_size=4, global_blocks=[1],
                                            grad_checkpointing=ckpt).train()
        m.forward_features(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], msg=n)


def test_forward_intermediates_match_forward_features(real_image):
    m = PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=4).eval()
    x = real_image(size=(96, 160))
    feats = m.forward_intermediates(x, indices=[1, -1], output_fmt="NCHW")
    assert [f.shape for f in feats] == [(1, 192, 6, 10)] * 2
    for idx, f in zip([1, -1], feats):
        tokens = m.forward_features(x, layer_idx=idx, strip_cls_token=True)
        torch.testing.assert_close(f.flatten(2).transpose(1, 2), tokens)
    nlc = m.forward_intermediates(x, indices=2, output_fmt="NLC")  # int = the last 2 blocks
    torch.testing.assert_close(nlc[1], feats[1].flatten(2).transpose(1, 2))
    assert [i["num_chs"] for i in m.feature_info] == [192] * 4 and m.feature_info[0]["reduction"] == 16


def test_layer_ids_for_lr_decay():
    m = PEVisionTransformer.from_config("PE-Core-T16-384", layers=3)
    assert m.get_num_layers() == 5
    ids = {n: m.get_layer_id(n) for n, _ in m.named_parameters()}
    assert ids["conv1.weight"] == ids["positional_embedding"] == ids["ln_pre.bias"] == 0
    assert ids["transformer.resblocks.0.attn.in_proj_weight"] == 1
    assert ids["transformer.resblocks.2.mlp.c_proj.bias"] == 3
    assert ids["attn_pool.probe"] == ids["proj"] == ids["ln_post.weight"] == 4


def test_input_checks_name_the_fix():
    m = PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=1)
    with pytest.raises(ValueError, match="multiple of the patch size 16.*pad_to_patch"):
        m.forward_features(torch.zeros(1, 3, 100, 64))
    with pytest.raises(ValueError, match="grayscale"):
        m.forward_features(torch.zeros(1, 1, 64, 64))
    padded = PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=1, pad_to_patch=True)
    assert padded.forward_features(torch.zeros(1, 3, 100, 64)).shape == (1, 1 + 7 * 4, 192)
    with pytest.raises(IndexError):
        m.forward_features(torch.zeros(1, 3, 64, 64), layer_idx=3)


def test_bf16_autocast_stays_close(real_image):
    m = PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=2).eval()
    x = real_image(size=(128, 128))
    with torch.no_grad():
        ref = m.forward_features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m.forward_features(x)
    assert low.dtype == torch.bfloat16
    assert ((low.float() - ref).norm() / ref.norm()).item() < 0.05


def _vitdet_window_block(blk, x, grid, window, rope_args):
    """Reference for window_padding="zeros", written the ViTDet way: normalise, zero-pad the token grid,
    cut windows, attend inside each window with window-local RoPE, stitch, crop (no prefix tokens)."""
    b, n, c = x.shape
    gh, gw = grid
    ph, pw = -(-gh // window) * window, -(-gw // window) * window
    y = torch.nn.functional.pad(blk.ln_1(x).view(b, gh, gw, c), (0, 0, 0, pw - gw, 0, ph - gh))
    out = torch.zeros(b, ph, pw, c)
    rope = rope_pairs(*rope_table((window, window), blk.attn.head_dim, num_prefix=0, window=window, **rope_args))
    for i in range(0, ph, window):
        for j in range(0, pw, window):
            win = y[:, i:i + window, j:j + window].reshape(b, window * window, c)
            out[:, i:i + window, j:j + window] = blk.attn(win, rope, (window, window)).view(
                b, window, window, c)
    x = x + blk.ls_1(out[:, :gh, :gw].reshape(b, n, c))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def test_zero_padded_windows_reproduce_vitdet():
    m = PEVisionTransformer.from_config("PE-Spatial-G14-448", layers=1, width=64, heads=4, mlp_width=128,
                                        window_size=4, window_padding="zeros", rope_mode="window", rope_ref_size=16,
                                        norm_eps=1e-6).eval()
    blk = m.blocks[0]
    assert blk.ln_1.eps == 1e-6 and m.ln_pre.eps == 1e-5
    grid = (6, 7)
    x = torch.randn(2, 42, 64)
    rope = m._rope(blk.attention_grid(grid), blk.window, x.device)
    with torch.no_grad():
        got = blk(x, rope, grid, 0)
        want = _vitdet_window_block(blk, x, grid, 4, dict(mode="window", ref_size=16))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        masked = PEVisionTransformer.from_config("PE-Spatial-G14-448", layers=1, width=64, heads=4, mlp_width=128,
                                                 window_size=4, rope_mode="window", rope_ref_size=16).eval()
        masked.load_state_dict(m.state_dict())
        assert not torch.allclose(masked.blocks[0](x, masked._rope(grid, 4, x.device), grid, 0), got, atol=1e-4)
