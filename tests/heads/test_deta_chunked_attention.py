"""Query-chunked deformable attention: the numbers of mmcv's module, in bounded memory."""
import pytest
import torch
from _deta_tiny import build, make_sample, tiny_deta_cfg
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttention
from pe_dense.heads.deta.chunked_attention import QueryChunkedDeformableAttention, chunk_deformable_attention

SHAPES = torch.tensor([[6, 5], [3, 3], [2, 1]])


def _pair(batch_first=True, **kw):
    torch.manual_seed(0)
    ref = MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=3, num_points=3,
                                        batch_first=batch_first, dropout=0.0, **kw).double()
    # mmcv initialises offsets to a fixed pattern and the weights to 0: randomise so every parameter matters
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.3)
    ours = QueryChunkedDeformableAttention(embed_dims=16, num_heads=2, num_levels=3, num_points=3,
                                           batch_first=batch_first, dropout=0.0, query_chunk=4, **kw).double()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


@pytest.mark.parametrize("ref_dim", [2, 4])  # encoder (points) and decoder (boxes) reference formats
def test_chunked_equals_mmcv_forward_and_backward(ref_dim):
    ref, ours = _pair()
    num_value = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    g = torch.Generator().manual_seed(1)
    query = torch.randn(2, 11, 16, generator=g, dtype=torch.float64)  # 11 queries: chunks of 4, 4 and 3
    value = torch.randn(2, num_value, 16, generator=g, dtype=torch.float64)
    pos = torch.randn(2, 11, 16, generator=g, dtype=torch.float64)
    refs = torch.rand(2, 11, 3, ref_dim, generator=g, dtype=torch.float64) * 0.8 + 0.1
    mask = torch.zeros(2, num_value, dtype=torch.bool)
    mask[1, -5:] = True
    start = torch.cat([SHAPES.new_zeros(1), (SHAPES[:, 0] * SHAPES[:, 1]).cumsum(0)[:-1]])
    outs = []
    for m in (ref, ours):
        q = query.clone().requires_grad_(True)
        out = m(q, value=value, query_pos=pos, key_padding_mask=mask, reference_points=refs,
                spatial_shapes=SHAPES, level_start_index=start)
        out.square().sum().backward()
        outs.append((out.detach(), q.grad, [p.grad.clone() for p in m.parameters()]))
    (o1, g1, p1), (o2, g2, p2) = outs
    torch.testing.assert_close(o2, o1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g2, g1, rtol=1e-12, atol=1e-12)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-11)


def test_chunking_a_built_model_keeps_parameters_and_predictions():
    import skimage.data

    torch.manual_seed(0)
    model = build(tiny_deta_cfg(num_queries=30)).eval()
    img = torch.from_numpy(skimage.data.astronaut()[:192, :256]).permute(2, 0, 1).float()
    sample = make_sample((192, 256), [[10, 10, 100, 100]], [1])
    data = model.data_preprocessor(dict(inputs=[img], data_samples=[sample]), False)
    with torch.no_grad():
        before = model.predict(data["inputs"], data["data_samples"])[0].pred_instances
    keys = set(model.state_dict())
    # 192x256 px: 1,024 encoder tokens over 5 levels and 30 decoder queries, so every sampling step is split
    assert chunk_deformable_attention(model, 7) == 3  # 1 encoder self-attention + 2 decoder cross-attentions
    assert set(model.state_dict()) == keys
    with torch.no_grad():
        after = model.predict(data["inputs"], data["data_samples"])[0].pred_instances
    torch.testing.assert_close(after.bboxes, before.bboxes, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(after.scores, before.scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(after.labels, before.labels)


def test_config_option_builds_chunked_modules():
    model = build(tiny_deta_cfg(msda_query_chunk=64))
    chunked = [m for m in model.modules() if isinstance(m, MultiScaleDeformableAttention)]
    assert chunked and all(type(m) is QueryChunkedDeformableAttention and m.query_chunk == 64 for m in chunked)
    with pytest.raises(ValueError, match="positive"):
        QueryChunkedDeformableAttention(embed_dims=16, num_heads=2, num_levels=3, num_points=3, query_chunk=0)
