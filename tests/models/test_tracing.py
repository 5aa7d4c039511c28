"""The backbone under torch.compile and torch.export: one graph, no recompiles, no complex ops, eager's numbers."""
import pytest
import torch
from torch._dynamo.utils import counters

from pe_dense.models.pe import PEVisionTransformer


@pytest.fixture
def model():
    torch.manual_seed(0)
    return PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=2, window_size=3, global_blocks=[1]).eval()


def test_compiles_as_one_graph_without_recompiling(model):
    """fullgraph=True fails on any graph break; a second call must reuse the graph (the RoPE cache once
    caused a recompile per call)."""
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(2, 3, 80, 112)
    with torch.no_grad():
        first, second = compiled(x), compiled(x + 1)
        torch.testing.assert_close(first, model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(second, model(x + 1), atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1


def test_export_traces_real_arithmetic_and_matches_eager(model):
    """Exporters (ONNX included) have no complex dtype: the exported graph must rotate RoPE pairs in reals."""
    x = torch.randn(1, 3, 64, 96)
    exported = torch.export.export(model, (x,))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert not [t for t in targets if "complex" in t]
    assert any("scaled_dot_product_attention" in t for t in targets)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), atol=1e-5, rtol=1e-5)
