"""mmcv's multi-scale deformable attention: the CPU path DETA runs on here, and its agreement with the CUDA op.

On CPU mmcv's ``MultiScaleDeformableAttention`` falls back to ``multi_scale_deformable_attn_pytorch``; on CUDA it
calls the compiled ``MultiScaleDeformableAttnFunction``. We check the pure-PyTorch function against a naive
bilinear-sampling loop written from the definition, the module's CPU dispatch, and (with a GPU and mmcv
built with CUDA) the compiled op against the CPU path, forward and backward.
"""
import pytest
import torch
from mmcv.ops import multi_scale_deform_attn as msda_mod
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttention,
    MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch,
)

SHAPES = torch.tensor([[6, 5], [3, 3], [2, 1]])


def _inputs(bs=2, num_query=7, heads=2, dim_per_head=4, points=3, dtype=torch.float64):
    num_value = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    levels = len(SHAPES)
    value = torch.randn(bs, num_value, heads, dim_per_head, dtype=dtype)
    # locations partly outside [0, 1] to exercise zero padding
    loc = torch.rand(bs, num_query, heads, levels, points, 2, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(bs, num_query, heads, levels, points, dtype=dtype)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    return value, loc, weights


def _naive_msda(value, shapes, loc, weights):
    """Definition: pixel (x, y) = (loc_x * W - 0.5, loc_y * H - 0.5), bilinear, zeros outside the map."""
    bs, _, heads, d = value.shape
    _, nq, _, levels, points, _ = loc.shape
    out = torch.zeros(bs, nq, heads, d, dtype=value.dtype)
    start = 0
    for lvl in range(levels):
        h, w = [int(s) for s in shapes[lvl]]
        fmap = value[:, start:start + h * w].reshape(bs, h, w, heads, d)
        start += h * w
        for b in range(bs):
            for q in range(nq):
                for m in range(heads):
                    for p in range(points):
                        x = float(loc[b, q, m, lvl, p, 0]) * w - 0.5
                        y = float(loc[b, q, m, lvl, p, 1]) * h - 0.5
                        x0, y0 = int(torch.floor(torch.tensor(x))), int(torch.floor(torch.tensor(y)))
                        acc = torch.zeros(d, dtype=value.dtype)
                        for yy, xx, wgt in ((y0, x0, (1 - (x - x0)) * (1 - (y - y0))),
                                            (y0, x0 + 1, (x - x0) * (1 - (y - y0))),
                                            (y0 + 1, x0, (1 - (x - x0)) * (y - y0)),
                                            (y0 + 1, x0 + 1, (x - x0) * (y - y0))):
                            if 0 <= yy < h and 0 <= xx < w:
                                acc += wgt * fmap[b, yy, xx, m]
                        out[b, q, m] += weights[b, q, m, lvl, p] * acc
    return out.reshape(bs, nq, heads * d)


def test_pytorch_msda_matches_naive_definition():
    value, loc, weights = _inputs()
    got = multi_scale_deformable_attn_pytorch(value, SHAPES, loc, weights)
    torch.testing.assert_close(got, _naive_msda(value, SHAPES, loc, weights), rtol=1e-10, atol=1e-10)


def _module_and_args(levels=3, heads=2, embed=8, points=3, bs=2, nq=5):
    attn = MultiScaleDeformableAttention(embed_dims=embed, num_heads=heads, num_levels=levels, num_points=points,
                                         dropout=0.0, batch_first=True)
    attn.init_weights()
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)  # non-trivial offsets
    attn.double()
    num_value = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    start = torch.cat([SHAPES.new_zeros(1), (SHAPES[:, 0] * SHAPES[:, 1]).cumsum(0)[:-1]])
    args = dict(query=torch.randn(bs, nq, embed, dtype=torch.float64),
                value=torch.randn(bs, num_value, embed, dtype=torch.float64),
                reference_points=torch.rand(bs, nq, levels, 4, dtype=torch.float64) * 0.5 + 0.25,
                spatial_shapes=SHAPES, level_start_index=start)
    return attn, args


def test_module_on_cpu_uses_the_pytorch_path(monkeypatch):
    attn, args = _module_and_args()
    calls = []

    def spy(*a, **k):
        calls.append(1)
        return multi_scale_deformable_attn_pytorch(*a, **k)

    def compiled(*a, **k):
        raise AssertionError("the compiled op must not run on CPU tensors")

    monkeypatch.setattr(msda_mod, "multi_scale_deformable_attn_pytorch", spy)
    monkeypatch.setattr(MultiScaleDeformableAttnFunction, "apply", compiled)
    out = attn(**args)
    assert calls == [1]
    # and the module output is the function's output through the module's own projections
    q, v, ref = args["query"], args["value"], args["reference_points"]
    bs, nq, _ = q.shape
    val = attn.value_proj(v).view(bs, v.shape[1], attn.num_heads, -1)
    off = attn.sampling_offsets(q).view(bs, nq, attn.num_heads, attn.num_levels, attn.num_points, 2)
    w = attn.attention_weights(q).view(bs, nq, attn.num_heads, -1).softmax(-1)
    w = w.view(bs, nq, attn.num_heads, attn.num_levels, attn.num_points)
    loc = ref[:, :, None, :, None, :2] + off / attn.num_points * ref[:, :, None, :, None, 2:] * 0.5
    expected = attn.output_proj(multi_scale_deformable_attn_pytorch(val, SHAPES, loc, w)) + q
    torch.testing.assert_close(out, expected)


def _cuda_op_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the compiled-op comparison runs on GPU machines only")
    value, loc, weights = [t.cuda() for t in _inputs(bs=1, num_query=2)]
    start = torch.cat([SHAPES.new_zeros(1), (SHAPES[:, 0] * SHAPES[:, 1]).cumsum(0)[:-1]]).cuda()
    try:
        MultiScaleDeformableAttnFunction.apply(value, SHAPES.cuda(), start, loc, weights, 64)
    except (RuntimeError, NotImplementedError) as err:  # mmcv built without CUDA ops
        pytest.skip(f"mmcv has no compiled CUDA deformable attention here ({err})")


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_compiled_cuda_op_matches_cpu_path(dtype, tol):
    _cuda_op_or_skip()
    value, loc, weights = _inputs(bs=2, num_query=9, dtype=dtype)
    start = torch.cat([SHAPES.new_zeros(1), (SHAPES[:, 0] * SHAPES[:, 1]).cumsum(0)[:-1]])
    cpu_in = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    gpu_in = [t.cuda().requires_grad_(True) for t in (value, loc, weights)]
    cpu_out = multi_scale_deformable_attn_pytorch(cpu_in[0], SHAPES, cpu_in[1], cpu_in[2])
    gpu_out = MultiScaleDeformableAttnFunction.apply(gpu_in[0], SHAPES.cuda(), start.cuda(), gpu_in[1],
                                                     gpu_in[2], 64)
    torch.testing.assert_close(gpu_out.cpu(), cpu_out, rtol=tol, atol=tol)
    grad = torch.randn_like(cpu_out)
    cpu_out.backward(grad)
    gpu_out.backward(grad.cuda())
    for name, c, g in zip(("value", "locations", "weights"), cpu_in, gpu_in):
        torch.testing.assert_close(g.grad.cpu(), c.grad, rtol=tol * 10, atol=tol * 10, msg=f"grad of {name}")
