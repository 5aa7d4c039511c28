"""Official-mode math at other sizes: RoPE angles and position-embedding resizes, checked by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from pe_dense.models.pe import PEVisionTransformer
from pe_dense.models.rope import (
    apply_rope,
    rope_frequencies,
    rope_pairs,
    rope_table,
    rotate_pairs_complex,
    rotate_pairs_real,
)


def test_frequencies_by_hand():
    f = rope_frequencies(64)  # head_dim 64 -> 16 frequencies per axis, 10000^(-2k/32)
    assert f.shape == (16,)
    assert math.isclose(f[0].item(), 1.0)
    assert math.isclose(f[3].item(), 10000 ** (-6 / 32), rel_tol=1e-12)


def test_official_angles_with_cls_token_by_hand():
    hd = 16
    cos, sin = rope_table((3, 5), hd, mode="official", ref_size=32, num_prefix=1)
    assert cos.shape == (1 + 15, hd)
    assert torch.all(cos[0] == 1) and torch.all(sin[0] == 0)  # cls token: angle 0
    f = rope_frequencies(hd)
    tok = 1 + 2 * 5 + 4  # row y=2, column x=4 -> positions (3, 5) because of the cls offset
    angle = torch.cat([(5 * f).repeat_interleave(2), (3 * f).repeat_interleave(2)]).float()
    torch.testing.assert_close(cos[tok], angle.cos())
    torch.testing.assert_close(sin[tok], angle.sin())


def test_official_mode_extrapolates_integer_positions():
    """A 40-wide grid keeps spacing 1: its first 32 columns carry the 32-grid's angles."""
    small = rope_table((1, 32), 16, mode="official", ref_size=32, num_prefix=0)[0]
    big = rope_table((1, 40), 16, mode="official", ref_size=32, num_prefix=0)[0]
    torch.testing.assert_close(big[:32], small)
    timm_big = rope_table((1, 40), 16, mode="timm", ref_size=32, num_prefix=0)[0]
    assert not torch.allclose(timm_big[:32], small)


def test_window_mode_is_the_released_detectors_formula():
    """arange(n) / n * ref + 1, n = window (windowed blocks) or grid side (global), with or without cls."""
    hd, f = 16, rope_frequencies(16)
    cos_w, _ = rope_table((8, 8), hd, mode="window", ref_size=16, num_prefix=0, window=6)
    grid = cos_w.view(8, 8, hd)
    torch.testing.assert_close(grid[6:, 6:], grid[:2, :2])  # every window sees the same local positions
    y, x = 2 / 6 * 16 + 1, 5 / 6 * 16 + 1  # token (2, 5) of the first window, DETA's ref 16
    angle = torch.cat([(x * f).repeat_interleave(2), (y * f).repeat_interleave(2)]).float()
    torch.testing.assert_close(grid[2, 5], angle.cos())
    cos_g, _ = rope_table((10, 10), hd, mode="window", ref_size=32, num_prefix=0, window=0)
    y, x = 3 / 10 * 32 + 1, 7 / 10 * 32 + 1  # global block: interpolated to the 32 grid, plus one
    angle = torch.cat([(x * f).repeat_interleave(2), (y * f).repeat_interleave(2)]).float()
    torch.testing.assert_close(cos_g.view(10, 10, hd)[3, 7], angle.cos())


def test_apply_rope_rotates_pairs():
    x = torch.tensor([[1.0, 0.0, 0.0, 2.0]])
    cos = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # 90 degrees on the first pair, 0 on the second
    sin = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(apply_rope(x, rope_pairs(cos, sin)), torch.tensor([[0.0, 1.0, 0.0, 2.0]]))
    a, b, t = torch.randn(5), torch.randn(5), torch.rand(5)  # (a, b) -> (a cos - b sin, b cos + a sin)
    pairs = torch.stack([a, b], -1).flatten()
    c, s = t.cos().repeat_interleave(2), t.sin().repeat_interleave(2)
    want = torch.stack([a * t.cos() - b * t.sin(), b * t.cos() + a * t.sin()], -1).flatten()
    torch.testing.assert_close(apply_rope(pairs, rope_pairs(c, s)), want)


def _official_rotation(x, cos, sin):
    """The official formula, x * cos + rotate_half(x) * sin with rotate_half(a, b) = (-b, a), in float32."""
    a, b = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    return (x.float() * cos + torch.stack([-b, a], -1).flatten(-2) * sin).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_complex_and_real_rotations_match_the_official_formula(dtype):
    """Eager (complex) and traced (real) paths agree with the official formula on a strided q/k view."""
    cos, sin = rope_table((6, 7), 32, mode="official", ref_size=32, num_prefix=1)
    qkv = torch.randn(2, 43, 3, 4, 32).to(dtype).permute(2, 0, 3, 1, 4)  # the attention's (3, B, H, N, d) view
    odd = torch.randn(2, 4, 43, 33).to(dtype)[..., 1:]  # odd offset and strides: no complex view possible
    for x in (qkv[:2], odd):
        want = _official_rotation(x, cos, sin)
        for path in (rotate_pairs_complex, rotate_pairs_real):
            got = path(x, rope_pairs(cos, sin))
            assert got.dtype == dtype
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6 if dtype == torch.float32 else 1e-2)


def test_rotation_gradients_match_the_official_formula():
    cos, sin = rope_table((4, 5), 16, mode="official", ref_size=32, num_prefix=0)
    x = torch.randn(2, 3, 20, 16, requires_grad=True)
    upstream = torch.randn(2, 3, 20, 16)
    (want,) = torch.autograd.grad(_official_rotation(x, cos, sin), x, upstream)
    for path in (rotate_pairs_complex, rotate_pairs_real):
        (got,) = torch.autograd.grad(path(x, rope_pairs(cos, sin)), x, upstream)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(want, upstream, atol=1e-2)  # the rotation does act on the gradient


def _tiny(**kw):
    return PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=1, **kw)


def test_bilinear_resize_is_official_interpolation():
    m = _tiny()
    pos = m.positional_embedding.detach()
    grid = pos[1:].reshape(1, 32, 32, -1).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(20, 44), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    got = m.resized_pos_embed((20, 44)).detach()
    torch.testing.assert_close(got[0], pos[0])  # cls entry kept apart
    torch.testing.assert_close(got[1:], want.reshape(20 * 44, -1))
    torch.testing.assert_close(m.resized_pos_embed((32, 32)), m.positional_embedding)


def test_tile_resize_repeats_the_stored_grid():
    m = _tiny(pos_embed_resize="tile", pos_grid=4)
    got = m.resized_pos_embed((6, 9))[1:].view(6, 9, -1)
    stored = m.positional_embedding[1:].view(4, 4, -1)
    torch.testing.assert_close(got[:4, :4], stored)
    torch.testing.assert_close(got[4:6, 4:8], stored[:2, :4])
    torch.testing.assert_close(got[:4, 8], stored[:, 0])
