#!/usr/bin/env python
"""Exported backbone and detector latency and memory: PyTorch eager vs onnxruntime vs OpenVINO, same weights.

  python benchmarks/export.py [--models T S B] [--size 512] [--detectors mask_rcnn deta] [--det-size 320]
                              [--runs 10] [--threads 2]

Each row runs in a fresh process: load (eager model, or the ONNX artefact exported once by the parent), three
warm-up calls, ``--runs`` timed calls (p50/p95 of wall time). Peak memory: how far inference raises the
resident-set high-water mark above the loaded model's resident size (``/proc/self/clear_refs`` reset after
loading), so runtime arenas, workspaces and bf16 weight copies made at the first call count. Like is compared
with like: fp32 rows with fp32, bf16 rows with bf16 (eager under one ``torch.autocast`` region, OpenVINO with
its bf16 inference precision; onnxruntime has no bf16 CPU kernels, so it has no bf16 row). Parity is each row's
max abs difference from the fp32 eager output divided by that output's max abs value, on a real photo. When
onnxruntime is slower than eager, its per-operator profile is printed below the table. Batch 1, random
weights, last block's map. Rows run one after another, so a busy machine skews them: run it idle.

Detector rows (the demo configs, random weights saved once and loaded by every row): mmdet is the model's own
predict (dynamic shapes, mmcv NMS; Mask R-CNN also pastes its masks), eager is the exported fixed-shape module run
in PyTorch, the artefact is the tools/export.py one at batch 1; parity is the largest difference of the sorted K
scores from eager fp32.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from _process import in_process, status_kb  # benchmarks/ is on sys.path when run as a script

MODELS = {"T": "PE-Spatial-T16-512", "S": "PE-Spatial-S16-512", "B": "PE-Spatial-B16-512"}
_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "demo")
DETECTORS = {"mask_rcnn": (os.path.join(_CONFIGS, "mask_rcnn_pe_t16_demo.py"), "pe_dense.export.mask_rcnn",
                           "MaskRCNNExport"),
             "deta": (os.path.join(_CONFIGS, "deta_pe_t16_demo.py"), "pe_dense.export.deta", "DETAExport")}
ROWS = (("eager", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("eager", "bf16"), ("openvino", "bf16"))
# detectors add mmdet's own predict: the eager model a user runs today (dynamic shapes, mmcv NMS and RoIAlign)
DETECTOR_ROWS = ROWS[:1] + (("mmdet", "fp32"),) + ROWS[1:]  # after eager fp32, the parity reference




def _photo(size):
    import skimage.data
    import torch

    from pe_dense.data.images import preprocess
    torch.manual_seed(0)
    return preprocess(skimage.data.astronaut(), (size, size)).numpy()


def _runner(runtime, precision, model_name, onnx_path, size, threads, profile_dir=None):
    """A callable numpy (1,3,H,W) -> numpy map, built for one row."""
    if runtime == "eager":
        import torch

        from pe_dense.export.feature_extractor import build_feature_extractor
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        if isinstance(model_name, tuple):  # a detector: (name, checkpoint)
            fe = _eager_detector(*model_name, size)
        else:
            fe = build_feature_extractor(model_name, [-1], (size, size)).eval()
        if precision == "bf16":
            ctx = torch.autocast("cpu", dtype=torch.bfloat16)
            ctx.__enter__()  # one region for the whole process: weights are cast once, not per call

        def run(x):
            with torch.no_grad():
                return _main_output(fe(torch.from_numpy(x))).float().numpy()
        return run
    if runtime == "mmdet":
        return _mmdet_predict(*model_name, size, threads)
    if runtime == "onnxruntime":
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        if profile_dir:
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(profile_dir, "ort")
        sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])

        def run(x):
            return _main_output(sess.run(None, {"images": x}))
        run.session = sess
        return run
    import openvino as ov
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    compiled = ov.Core().compile_model(onnx_path, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                          "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    return lambda x: np.array(_main_output(list(request.infer([x]).values())))


def _main_output(outs):
    """The output a row's parity is measured on: the map (backbone) or the K sorted scores (detectors)."""
    return outs[1] if len(outs) >= 4 else outs[0]


def _eager_detector(name, checkpoint, size):
    import importlib

    from pe_dense.export.detectors import build_detector
    config, module, wrapper = DETECTORS[name]
    model, _ = build_detector(config, checkpoint)
    return getattr(importlib.import_module(module), wrapper)(model, (size, size))


def _mmdet_predict(name, checkpoint, size, threads, max_dets=100):
    """mmdet's predict on the whole input (img_shape = input), its scores sorted and padded to the export's K
    slots, so parity compares like with like."""
    import torch
    from mmdet.structures import DetDataSample

    from pe_dense.export.detectors import build_detector
    torch.set_num_threads(threads)
    model, _ = build_detector(DETECTORS[name][0], checkpoint)
    meta = dict(img_shape=(size, size), ori_shape=(size, size), batch_input_shape=(size, size),
                scale_factor=(1.0, 1.0))

    def run(x):
        with torch.no_grad():
            pred = model.predict(torch.from_numpy(x), [DetDataSample(metainfo=meta)], rescale=False)[0]
        scores = np.zeros((1, max_dets), np.float32)
        top = pred.pred_instances.scores.sort(descending=True).values[:max_dets].numpy()
        scores[0, :len(top)] = top
        return scores
    return run


def _export_detector(name, size, tmp):
    """Random weights of the demo detector saved to ``tmp`` and its batch-1 ONNX artefact: (checkpoint, onnx)."""
    import torch

    from pe_dense.export.detectors import build_detector, export_detector
    config = DETECTORS[name][0]
    torch.manual_seed(0)
    model, _ = build_detector(config, None)
    ckpt = os.path.join(tmp, name + ".pth")
    torch.save({"state_dict": model.state_dict(), "meta": {}}, ckpt)
    return ckpt, export_detector(config, ckpt, (size, size), tmp, batch=1)


def _measure(runtime, precision, model_name, onnx_path, size, threads, runs, out):
    import ctypes
    import gc
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD fixed: large frees return to the OS
    run = _runner(runtime, precision, model_name, onnx_path, size, threads)
    x = _photo(size)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # high-water mark := resident size with the model loaded, before any inference
    base = status_kb("VmRSS")
    for _ in range(3):
        y = run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    out.put(dict(p50=statistics.median(times), p95=float(np.percentile(times, 95)),
                 mem=(status_kb("VmHWM") - base) / 1024, y=y))


def _ort_profile(onnx_path, size, threads, out):
    import json
    with tempfile.TemporaryDirectory() as d:
        run = _runner("onnxruntime", "fp32", None, onnx_path, size, threads, profile_dir=d)
        x = _photo(size)
        for _ in range(4):
            run(x)
        with open(run.session.end_profiling()) as f:
            events = json.load(f)
    per_op = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            per_op[op] = per_op.get(op, 0) + e["dur"] / 4 / 1e3
    out.put(sorted(per_op.items(), key=lambda kv: -kv[1])[:6])




def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["T", "S", "B"], choices=sorted(MODELS))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--detectors", nargs="*", default=["mask_rcnn", "deta"], choices=sorted(DETECTORS),
                   help="demo detectors to add (default: both)")
    p.add_argument("--det-size", type=int, default=320, help="detector input size (the demo configs' 320)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    from pe_dense.export.feature_extractor import export_backbone
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"# {cpu}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}, batch 1, "
          f"{args.size} px (detectors {args.det_size}), {args.runs} timed runs after 3 warm-up", flush=True)
    print("| model | runtime | precision | p50 ms | p95 ms | peak MB | parity vs eager fp32 (max rel err; "
          "detectors: max score diff) |")
    print("|---|---|---|---|---|---|---|")
    profiles = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(key, MODELS[key], args.size) for key in args.models]
        jobs += [(name, name, args.det_size) for name in args.detectors]
        for key, spec, size in jobs:
            torch.manual_seed(0)
            if key in DETECTORS:
                ckpt, onnx_path = _export_detector(key, size, tmp)
                spec = (key, ckpt)
            else:
                onnx_path = export_backbone(spec, [-1], (size, size), tmp, batch=1)
            res = {}
            for runtime, precision in (DETECTOR_ROWS if key in DETECTORS else ROWS):
                try:
                    res[runtime, precision] = r = in_process(_measure, runtime, precision, spec, onnx_path, size,
                                                              args.threads, args.runs)
                except RuntimeError as e:  # one runtime failing (its traceback is on stderr) is a row, not the end
                    print(f"| {key} | {runtime} | {precision} | - | - | - | failed: {e} |", flush=True)
                    continue
                ref = res["eager", "fp32"]["y"]
                if key in DETECTORS:
                    parity = f"score {float(np.abs(r['y'] - ref).max()):.1e}"
                else:
                    parity = f"{float(np.abs(r['y'] - ref).max() / np.abs(ref).max()):.1e}"
                print(f"| {key} | {runtime} | {precision} | {r['p50'] * 1e3:.0f} | {r['p95'] * 1e3:.0f} | "
                      f"{r['mem']:.0f} | {parity} |", flush=True)
            eager_p50 = min(res[r, "fp32"]["p50"] for r in ("eager", "mmdet") if (r, "fp32") in res)
            if ("onnxruntime", "fp32") in res and res["onnxruntime", "fp32"]["p50"] > eager_p50:
                profiles.append((key, in_process(_ort_profile, onnx_path, size, args.threads)))
    for key, ops in profiles:
        print(f"\n{key}: onnxruntime fp32 is slower than eager PyTorch; its time per operator type (ms per call): "
              + ", ".join(f"{op} {ms:.1f}" for op, ms in ops))


if __name__ == "__main__":
    sys.exit(main())
