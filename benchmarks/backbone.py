#!/usr/bin/env python
"""Backbone throughput and peak memory: pe_dense against timm's PE port, same weights, one run, one table.

  python benchmarks/backbone.py [--quick] [--models T S B L] [--batch 1] [--iters 5]

Each measurement runs in a fresh process; memory is the peak resident memory above the level before the first
call (sampled every millisecond), i.e. what the forward passes allocate; throughput is the median of
``--iters`` timed calls after two warm-up calls, best of two processes run in the order timm, ours, ours, timm.
FLOPs are counted analytically (matmuls + attention) and
reported as a fraction of this machine's measured matmul peak for the same dtype. Run it on an idle machine:
other load shows up directly in the numbers.
"""
import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import threading
import time

MODELS = {"T": ("PE-Spatial-T16-512", 512), "S": ("PE-Spatial-S16-512", 512), "B": ("PE-Spatial-B16-512", 512),
          "L": ("PE-Spatial-L14-448", 448), "G": ("PE-Spatial-G14-448", 448)}


def model_flops(cfg, size):
    n = (size // cfg.patch_size) ** 2 + cfg.num_prefix_tokens
    w, m = cfg.width, cfg.mlp_width
    per_block = n * (4 * w * w + 2 * w * m) + 2 * n * n * w  # MACs: qkv+out, mlp, q@k and attn@v
    embed = (size // cfg.patch_size) ** 2 * 3 * cfg.patch_size ** 2 * w
    return 2 * (cfg.layers * per_block + embed)


def matmul_peak(dtype_name, n=2048, iters=5):
    import torch
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    return 2 * n ** 3 * iters / (time.perf_counter() - t0)


def _rss_mb():
    """Current resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


class PeakRSS:
    """Samples RSS every millisecond in a thread: the peak above the level at entry is the forward's memory."""

    def __enter__(self):
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.mb = self.peak - self.base


def _measure(impl, key, dtype_name, batch, iters, queue):
    import torch

    from pe_dense.models.checkpoint import official_to_timm
    from pe_dense.models.pe import PEVisionTransformer
    torch.manual_seed(0)
    name, size = MODELS[key]
    ours = PEVisionTransformer.from_config(name).eval()
    if impl == "timm":
        import timm
        model = timm.create_model(ours.cfg.timm_name, pretrained=False).eval()
        model.load_state_dict(official_to_timm(ours.state_dict()))
        del ours
    else:
        model = ours
    fn = model.forward_features
    x = torch.randn(batch, 3, size, size)
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype_name]
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype_name != "fp32"), PeakRSS() as mem:
        fn(x)  # warm-up: allocator and kernel caches
        fn(x)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    queue.put(dict(ips=batch / statistics.median(times), peak_mb=mem.mb))


def measure(*args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(*args, q))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"benchmark process for {args} failed")
    return q.get()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["T", "S", "B", "L"], choices=list(MODELS))
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="T only, fp32, 1 iteration (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.dtypes, args.iters = ["T"], ["fp32"], 1
    import torch

    from pe_dense.models.configs import get_config
    peaks = {d: matmul_peak(d) for d in args.dtypes}
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; matmul peak "
          + ", ".join(f"{d} {v / 1e9:.0f} GFLOP/s" for d, v in peaks.items()))
    impls = ["timm", "ours"]
    print(f"{'model':<20}{'size':>5}{'dtype':>6} " + "".join(f"{i + ' img/s':>18}{'MB':>7}" for i in impls)
          + f"{'speedup':>9}{'% peak':>8}")
    for key in args.models:
        name, size = MODELS[key]
        for dt in args.dtypes:
            # timm, ours, ours, timm: best of two processes each, so clock drift during a row favours neither
            runs = [(i, measure(i, key, dt, args.batch, args.iters)) for i in impls + impls[::-1]]
            res = {i: max((r for j, r in runs if j == i), key=lambda r: r["ips"]) for i in impls}
            flops = model_flops(get_config(name), size)
            frac = res["ours"]["ips"] * flops / peaks[dt] * 100
            cells = "".join(f"{res[i]['ips']:>18.3f}{res[i]['peak_mb']:>7.0f}" for i in impls)
            speedup = res["ours"]["ips"] / res["timm"]["ips"]
            print(f"{name:<20}{size:>5}{dt:>6} {cells}{speedup:>8.2f}x{frac:>7.0f}%")


if __name__ == "__main__":
    main()
