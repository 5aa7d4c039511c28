#!/usr/bin/env python
"""Backbone throughput and peak memory: pe_dense against timm's PE port, same weights, one run, one table.

  python benchmarks/backbone.py [--models T S B L] [--dtypes fp32 bf16] [--rounds 15] [--compile] [--quick]

Throughput: both models live in one process and are timed call by call in alternating order (ours first in
even rounds, timm first in odd ones), after two warm-up calls each. Clock drift and neighbours on a shared machine
then hit both alike; the speedup column is the median over rounds of timm's time / ours, with its interquartile
range. ``--compile`` adds rows where both models run under ``torch.compile`` (inductor, frozen weights).

Memory: the peak resident memory a forward pass adds, in a fresh process per implementation. The kernel's
high-water mark is reset after the model is built (``/proc/self/clear_refs``) and glibc's mmap threshold is fixed,
so freed tensors go back to the OS and the mark measures the forward's own allocations.

FLOPs are counted analytically (matmuls + attention) and reported as a fraction of this machine's measured
matmul peak for the same dtype. Run it on an idle machine; it prints progress to stderr.
"""
import argparse
import ctypes
import platform
import statistics
import sys
import time

from _process import in_process, status_kb  # benchmarks/ is on sys.path when run as a script

MODELS = {"T": ("PE-Spatial-T16-512", 512), "S": ("PE-Spatial-S16-512", 512), "B": ("PE-Spatial-B16-512", 512),
          "L": ("PE-Spatial-L14-448", 448), "G": ("PE-Spatial-G14-448", 448)}
IMPLS = ("timm", "ours")


def model_flops(cfg, size):
    """Forward FLOPs at batch 1: 2 x the multiply-accumulates of the matmuls, attention and patch embedding."""
    n = (size // cfg.patch_size) ** 2 + cfg.num_prefix_tokens
    w, m = cfg.width, cfg.mlp_width
    per_block = n * (4 * w * w + 2 * w * m) + 2 * n * n * w  # qkv+out, mlp, q@k and attn@v
    embed = (size // cfg.patch_size) ** 2 * 3 * cfg.patch_size ** 2 * w
    return 2 * (cfg.layers * per_block + embed)


def matmul_peak(dtype_name, n=2048, iters=15):
    """Best single 2048-cube matmul: the machine's attainable rate (an average would fold in its noise)."""
    import torch
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def _build(impl, key):
    """The same random weights (seed 0) in either implementation."""
    import torch

    from pe_dense.models.checkpoint import official_to_timm
    from pe_dense.models.pe import PEVisionTransformer
    torch.manual_seed(0)
    ours = PEVisionTransformer.from_config(MODELS[key][0]).eval()
    if impl == "ours":
        return ours
    import timm
    model = timm.create_model(ours.cfg.timm_name, pretrained=False).eval()
    model.load_state_dict(official_to_timm(ours.state_dict()))
    return model


def _runner(model, dtype_name, compiled):
    import torch
    fn = model.forward_features
    if compiled:
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True  # weights become constants: prepacked, cast once
        fn = torch.compile(fn)
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype_name]

    def run(x):
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype_name != "fp32"):
            return fn(x)
    return run


def _time_pair(key, dtype_name, batch, rounds, compiled, queue):
    import torch
    x = torch.randn(batch, 3, MODELS[key][1], MODELS[key][1])
    runs = {impl: _runner(_build(impl, key), dtype_name, compiled) for impl in IMPLS}
    for run in runs.values():  # warm-up (and compilation)
        run(x)
        run(x)
    times = {impl: [] for impl in IMPLS}
    for r in range(rounds):
        for impl in (IMPLS if r % 2 else IMPLS[::-1]):
            t0 = time.perf_counter()
            runs[impl](x)
            times[impl].append(time.perf_counter() - t0)
    ratios = sorted(t / o for t, o in zip(times["timm"], times["ours"]))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    queue.put(dict(ips={i: batch / statistics.median(t) for i, t in times.items()},
                   speedup=statistics.median(ratios), iqr=(q1, q3)))




def _peak_memory(impl, key, dtype_name, batch, queue):
    import gc

    import torch
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD fixed: large frees return to the OS
    run = _runner(_build(impl, key), dtype_name, compiled=False)
    x = torch.randn(batch, 3, MODELS[key][1], MODELS[key][1])
    run(x)  # first call: lazy kernel and RoPE tables
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident size
    base = status_kb("VmRSS")
    run(x)
    queue.put((status_kb("VmHWM") - base) / 1024)




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["T", "S", "B", "L"], choices=list(MODELS))
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15, help="timed calls per implementation")
    ap.add_argument("--compile", action="store_true", help="add torch.compile rows (both implementations)")
    ap.add_argument("--quick", action="store_true", help="T only, fp32, 3 rounds (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.dtypes, args.rounds = ["T"], ["fp32"], 3
    import torch

    from pe_dense.models.configs import get_config
    peaks = {d: matmul_peak(d) for d in args.dtypes}
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, batch {args.batch}, {args.rounds} rounds; matmul peak "
          + ", ".join(f"{d} {v / 1e9:.0f} GFLOP/s" for d, v in peaks.items()))
    print("| model | size | dtype | mode | timm img/s | ours img/s | ours/timm (IQR) | timm MB | ours MB "
          "| % of matmul peak (ours) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    modes = ["eager", "compiled"] if args.compile else ["eager"]
    for key in args.models:
        name, size = MODELS[key]
        flops = model_flops(get_config(name), size)
        for dt in args.dtypes:
            mem = {i: in_process(_peak_memory, i, key, dt, args.batch) for i in IMPLS}
            for mode in modes:
                print(f"[{key} {dt} {mode}] timing ...", file=sys.stderr, flush=True)
                res = in_process(_time_pair, key, dt, args.batch, args.rounds, mode == "compiled")
                ips, (q1, q3) = res["ips"], res["iqr"]
                mb = [f"{mem[i]:.0f}" if mode == "eager" else "-" for i in IMPLS]
                print(f"| {name} | {size} | {dt} | {mode} | {ips['timm']:.3g} | {ips['ours']:.3g} "
                      f"| {res['speedup']:.2f}x ({q1:.2f}-{q3:.2f}) | {mb[0]} | {mb[1]} "
                      f"| {ips['ours'] * flops / peaks[dt] * 100:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
