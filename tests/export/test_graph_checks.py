"""The graph walk flags each forbidden construct on hand-built ONNX graphs, and passes a clean one."""
import onnx
import pytest
from onnx import TensorProto, helper

from pe_dense.export.graph_checks import ForbiddenGraphError, assert_exportable_graph, graph_problems


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _x(shape=("batch", 3, 8, 8), dtype=TensorProto.FLOAT, name="x"):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def test_clean_graph_passes():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_x(name="y")])
    onnx.checker.check_model(m)
    assert graph_problems(m) == []
    assert_exportable_graph(m)


def test_if_node_also_inside_a_subgraph_is_found():
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [], [_x(name="z")])
    cond = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    loop_body = helper.make_graph([cond], "body", [], [_x(name="y")])
    outer = helper.make_node("Loop", ["", "c"], ["w"], body=loop_body)
    m = _model([outer], [_x(), helper.make_tensor_value_info("c", TensorProto.BOOL, [])], [_x(name="w")])
    problems = graph_problems(m)
    assert any("control-flow node Loop" in p for p in problems)
    assert any("control-flow node If" in p for p in problems)


@pytest.mark.parametrize("op", ["NonZero", "NonMaxSuppression", "Unique", "Compress"])
def test_data_dependent_shape_ops_are_found(op):
    m = _model([helper.make_node(op, ["x"], ["y"])], [_x()], [_x(name="y")])
    assert [p for p in graph_problems(m) if p.startswith(f"data-dependent shape from {op}")]


def test_complex_dtypes_and_symbolic_spatial_dims_are_found():
    m = _model([helper.make_node("Identity", ["x"], ["y"])], [_x(("batch", 3, "H", 8))],
               [_x(name="y", dtype=TensorProto.COMPLEX64)])
    problems = graph_problems(m)
    assert "complex dtype on y" in problems
    assert any("x has a symbolic dimension 2 (H)" in p for p in problems)
    with pytest.raises(ForbiddenGraphError, match="fixed-size tensor ops"):
        assert_exportable_graph(m)


def test_batch_must_match_the_request():
    fixed = _model([helper.make_node("Relu", ["x"], ["y"])], [_x((1, 3, 8, 8))], [_x((1, 3, 8, 8), name="y")])
    assert graph_problems(fixed, dynamic_batch=False) == []
    assert any("fixed batch 1" in p for p in graph_problems(fixed, dynamic_batch=True))
    assert any("symbolic dimension 0" in p for p in graph_problems(_model(
        [helper.make_node("Relu", ["x"], ["y"])], [_x()], [_x(name="y")]), dynamic_batch=False))


def _msda_module():
    """mmcv's PyTorch deformable attention with the level shapes as Python ints (as the DETA export bakes them;
    as a tensor they become data-computed sizes)."""
    import torch
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

    class MSDA(torch.nn.Module):
        def forward(self, value, locations, weights):
            return multi_scale_deformable_attn_pytorch(value, [(8, 8), (4, 4)], locations, weights)
    return MSDA()


def test_deformable_attention_keeps_bilinear_sampling_at_opset_17_only(tmp_path):
    """At the default opset 17 GridSample is 'bilinear', runs in onnxruntime equal to mmcv's eager op and the
    graph passes; at opset 20 the same graph says 'linear' (TensorRT: nearest) and is refused."""
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    args = (torch.randn(2, 80, 2, 4), torch.rand(2, 5, 2, 2, 3, 2) * 1.2 - 0.1, torch.rand(2, 5, 2, 2, 3))
    ep = torch.export.export(_msda_module(), args)
    for opset in (17, 20):
        path = str(tmp_path / f"msda{opset}.onnx")
        torch.onnx.export(ep, args, path, dynamo=True, opset_version=opset, input_names=["v", "loc", "w"])
        problems = graph_problems(onnx.load(path), dynamic_batch=False)
        if opset == 17:
            assert problems == []
            got = ort.InferenceSession(path).run(None, {k: a.numpy() for k, a in zip(["v", "loc", "w"], args)})
            np.testing.assert_allclose(got[0], _msda_module()(*args).numpy(), rtol=1e-5, atol=1e-6)
        else:
            assert any("GridSample mode 'linear'" in p for p in problems)


def test_gridsample_modes_on_a_hand_built_graph():
    def grid_model(mode):
        node = helper.make_node("GridSample", ["x", "g"], ["y"], mode=mode)
        return _model([node], [_x((1, 1, 4, 4)), _x((1, 2, 2, 2), name="g")], [_x((1, 1, 2, 2), name="y")])
    assert graph_problems(grid_model("bilinear"), dynamic_batch=False) == []
    assert graph_problems(grid_model("nearest"), dynamic_batch=False)
