"""Write one self-contained artefact per model: ONNX (or torch.export / OpenVINO) with its metadata inside and
beside it as JSON, so a robot-side runtime needs nothing but the file.

Metadata values are stored in ONNX ``metadata_props`` as JSON strings (onnxruntime exposes them through
``get_modelmeta().custom_metadata_map``); the same dict is written to ``<name>.json``.
"""
from __future__ import annotations

import json
import logging
import os
import platform
from importlib import metadata as importlib_metadata
from typing import Dict, Optional, Sequence

import torch

from pe_dense.extras import require

from .graph_checks import assert_exportable_graph

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torch-export", "openvino")
DEFAULT_OPSET = 17  # GridSample is mode="bilinear" up to 19; at 20 it is "linear", which TensorRT runs as nearest
ONNX_PROTO_LIMIT = 2 * 1024 ** 3  # protobuf cannot serialise more; larger weights go to external data


def export_versions(extra: Sequence[str] = ()) -> Dict[str, str]:
    """Versions of the packages that made the artefact (what to quote when a runtime disagrees)."""
    out = {"python": platform.python_version()}
    for name in ("pe_dense", "torch", "onnx", "onnxscript", "onnxruntime", "openvino", *extra):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def _example_batch(batch) -> int:
    # torch.export specialises a dimension whose example value is 1, so a dynamic batch is traced at 2
    return 2 if batch == "dynamic" else int(batch)


def _example_args(size, batch, extra_inputs=()) -> tuple:
    """The images plus one batched copy of each extra input's per-image example (e.g. an original size)."""
    b = _example_batch(batch)
    return (torch.zeros(b, 3, *size), *(t[None].expand(b, *t.shape).clone() for _, t in extra_inputs))


def torch_export(module: torch.nn.Module, size, batch="dynamic", extra_inputs=()) -> torch.export.ExportedProgram:
    """``torch.export`` of a (B, 3, H, W) [+ extra (B, ...) inputs] -> outputs module; only the batch is dynamic."""
    args = _example_args(size, batch, extra_inputs)
    dim = torch.export.Dim("batch", min=1, max=1024)
    dynamic = tuple({0: dim} for _ in args) if batch == "dynamic" else None
    with torch.no_grad():
        return torch.export.export(module.eval(), args, dynamic_shapes=dynamic)


def _weights_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def export_artefact(module: torch.nn.Module, out_dir: str, name: str, *, size, output_names: Sequence[str],
                    metadata: dict, fmt: str = "onnx", batch="dynamic", opset: int = DEFAULT_OPSET,
                    input_name: str = "images", extra_inputs=()) -> str:
    """Export ``module`` and write ``<out_dir>/<name>.{onnx,pt2,xml}`` plus ``<name>.json``; returns the path.

    ``extra_inputs``: (name, per-image example tensor) pairs of inputs after the images, batched like them.
    The ONNX graph is checked with ``onnx.checker`` and :func:`assert_exportable_graph` before it is kept.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} unknown; choose one of {FORMATS}")
    os.makedirs(out_dir, exist_ok=True)
    meta = dict(metadata, input_name=input_name, output_names=list(output_names), batch=batch,
                input_shape=["batch" if batch == "dynamic" else int(batch), 3, *size], opset=opset,
                format=fmt, export_versions=export_versions())
    if extra_inputs:
        meta["extra_inputs"] = {n: {"shape": ["batch", *t.shape], "dtype": str(t.dtype).replace("torch.", "")}
                                for n, t in extra_inputs}
    ep = torch_export(module, size, batch, extra_inputs)
    if fmt == "torch-export":
        path = os.path.join(out_dir, name + ".pt2")
        torch.export.save(ep, path, extra_files={"pe_dense_metadata.json": json.dumps(meta)})
    else:
        path = _write_onnx(ep, os.path.join(out_dir, name + ".onnx"), module, size, output_names, meta, opset,
                           input_name, batch, extra_inputs)
        if fmt == "openvino":
            path = _onnx_to_openvino(path, meta)
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(meta, f, indent=2)
    logger.info("wrote %s", path)
    return path


def _write_onnx(ep, path, module, size, output_names, meta, opset, input_name, batch, extra_inputs=()) -> str:
    onnx = require("export", "onnx", "pe_dense.export")

    program = torch.onnx.export(ep, _example_args(size, batch, extra_inputs), None, dynamo=True,
                                opset_version=opset, input_names=[input_name, *(n for n, _ in extra_inputs)],
                                output_names=list(output_names), optimize=True)
    for key, value in meta.items():
        program.model.metadata_props[key] = json.dumps(value)
    external = _weights_bytes(module) >= ONNX_PROTO_LIMIT
    program.save(path, external_data=external)
    onnx.checker.check_model(path, full_check=True)  # a path, so models with external data are checked too
    model = onnx.load(path, load_external_data=False)
    got = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    if got != opset:
        raise RuntimeError(f"asked for opset {opset} but the exporter wrote {got}: pass an --opset this torch "
                           "exporter can convert to (17-20 work with torch 2.14)")
    assert_exportable_graph(model, dynamic_batch=batch == "dynamic")
    return path


def _onnx_to_openvino(onnx_path: str, meta: dict) -> str:
    """OpenVINO IR (.xml + .bin) converted from the checked ONNX file, metadata in its rt_info."""
    ov = require("export", "openvino", "OpenVINO export (pe_dense.export)")

    model = ov.convert_model(onnx_path)
    for key, value in meta.items():
        model.set_rt_info(json.dumps(value), ["pe_dense", key])
    xml = os.path.splitext(onnx_path)[0] + ".xml"
    ov.save_model(model, xml, compress_to_fp16=False)  # keep the precision that was exported
    return xml


def load_metadata(path: str) -> Optional[dict]:
    """Metadata stored inside an ONNX file (None if it has none)."""
    onnx = require("export", "onnx", "pe_dense.export")

    model = onnx.load(path, load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return {k: json.loads(v) for k, v in props.items()} if props else None
