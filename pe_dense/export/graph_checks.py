"""Walk an ONNX graph for what robot runtimes (TensorRT, OpenVINO, ORT mobile) cannot serve at fixed shape.

Forbidden: control flow (``If``, ``Loop``, ``Scan``), ops whose output length depends on the data
(``NonZero``, ``NonMaxSuppression``, ``Unique``, ``Compress``), complex dtypes anywhere, graph inputs or
outputs with a symbolic dimension other than the batch, and ``GridSample`` in any mode but ``"bilinear"``: from
opset 20 bilinear is spelled ``"linear"``, which TensorRT's ONNX parser silently runs as nearest (onnx-tensorrt
PR #1060), so deformable attention is exported at opset <= 19 (the default 17).
"""
from __future__ import annotations

from typing import List

from pe_dense.extras import require

CONTROL_FLOW = {"If", "Loop", "Scan"}
DATA_DEPENDENT_SHAPE = {"NonZero", "NonMaxSuppression", "Unique", "Compress"}


class ForbiddenGraphError(ValueError):
    pass


def _complex_types():
    onnx = require("export", "onnx", "pe_dense.export")

    return {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}


def _walk_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _walk_nodes(sub)


def graph_problems(model, dynamic_batch: bool = True) -> List[str]:
    """Every forbidden construct in ``model`` (an onnx.ModelProto), as readable strings; empty if clean."""
    problems = []
    for node in _walk_nodes(model.graph):
        if node.op_type in CONTROL_FLOW:
            problems.append(f"control-flow node {node.op_type} ({node.name})")
        if node.op_type in DATA_DEPENDENT_SHAPE:
            problems.append(f"data-dependent shape from {node.op_type} ({node.name})")
        if node.op_type == "GridSample":
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "bilinear")
            if mode != "bilinear":
                problems.append(f"GridSample mode {mode!r} ({node.name}): export at opset 17-19, where bilinear "
                                "sampling is mode 'bilinear' (TensorRT runs 'linear' as nearest)")
    complex_types = _complex_types()
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    for v in values:
        if v.type.tensor_type.elem_type in complex_types:
            problems.append(f"complex dtype on {v.name}")
    for init in model.graph.initializer:
        if init.data_type in complex_types:
            problems.append(f"complex initializer {init.name}")
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            static = d.HasField("dim_value")
            if not static and not (axis == 0 and dynamic_batch):
                problems.append(f"{v.name} has a symbolic dimension {axis} ({d.dim_param or '?'}): only the batch "
                                "may be dynamic")
            if static and axis == 0 and dynamic_batch:
                problems.append(f"{v.name} was asked for a dynamic batch but has a fixed batch {d.dim_value}")
    return problems


def assert_exportable_graph(model, dynamic_batch: bool = True) -> None:
    problems = graph_problems(model, dynamic_batch)
    if problems:
        raise ForbiddenGraphError("exported graph has constructs robot runtimes cannot serve at fixed shape: "
                                  + "; ".join(problems) + ". Rewrite the offending code with fixed-size tensor "
                                  "ops (see PE_FACTS section 9)")
