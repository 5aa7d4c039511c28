#!/usr/bin/env python
"""Speed and memory of DAVIS label propagation with PE-Spatial T/S/B on this machine's CPU.

Each model runs in its own subprocess so that its peak resident memory is its own. Per model: feature extraction
time per frame (batched, DAVIS frame -> protocol input), propagation time per frame in the steady state (the
queue full: first frame + 7 context frames), their sum as frames/s, and the peak RSS of the process.
Random weights (speed does not depend on them).

    python benchmarks/tracking.py            # 8 frames per model
    python benchmarks/tracking.py --quick    # 2 frames per model, for a smoke check
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

MODELS = ("PE-Spatial-T16-512", "PE-Spatial-S16-512", "PE-Spatial-B16-512")
DAVIS_FRAME = (480, 854)  # DAVIS-2017 480p frames, height x width


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def worker(args) -> dict:
    import logging

    import numpy as np
    import torch

    from pe_dense.tracking.features import FeatureExtractor, build_model
    from pe_dense.tracking.propagate import LabelPropagator
    from pe_dense.tracking.resize import protocol_frame_size

    logging.basicConfig(level=logging.ERROR)
    torch.manual_seed(0)
    rss_start = rss_mib()
    model = build_model(args.worker)
    extractor = FeatureExtractor(model, batch_size=args.batch_size, device="cpu")
    frame_h, frame_w = args.frame
    size = tuple(args.input_size) if args.input_size else protocol_frame_size(frame_h, frame_w,
                                                                               patch_size=extractor.patch_size)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(args.frames, frame_h, frame_w, 3), dtype=np.uint8)

    extractor.frames_to_features(frames[:1], size)  # warm-up (allocator, RoPE tables)
    start = time.perf_counter()
    feats = torch.cat([extractor.frames_to_features(frames[i:i + args.batch_size], size)
                       for i in range(0, args.frames, args.batch_size)])
    feat_s = (time.perf_counter() - start) / args.frames

    first_mask = np.zeros((frame_h, frame_w), dtype=np.int64)
    first_mask[100:300, 100:300], first_mask[150:400, 450:700] = 1, 2
    prop = LabelPropagator(feats[0], first_mask, n_last_frames=args.n_last_frames,
                           patch_size=extractor.patch_size)
    for t in range(args.n_last_frames):  # fill the queue: later frames see the full context
        prop.step(feats[(t + 1) % len(feats)])
    steps = max(args.frames, 2)
    start = time.perf_counter()
    for t in range(steps):
        prop.step(feats[t % len(feats)])
    prop_s = (time.perf_counter() - start) / steps
    return dict(model=args.worker, input=f"{size[0]}x{size[1]}", tokens=f"{feats.shape[2]}x{feats.shape[3]}",
                feat_s=feat_s, prop_s=prop_s, fps=1.0 / (feat_s + prop_s), rss_start=rss_start, rss_peak=rss_mib(),
                threads=torch.get_num_threads())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 frames per model instead of 8")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--frames", type=int, help="frames timed per model (default 8, 2 with --quick)")
    p.add_argument("--frame", type=int, nargs=2, default=DAVIS_FRAME, metavar=("H", "W"),
                   help="original frame size (default DAVIS 480 854, fed to the net as 480x832)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="override the network input size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--n-last-frames", type=int, default=7)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.frames = args.frames or (2 if args.quick else 8)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    rows = []
    for name in args.models:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--frames", str(args.frames),
               "--frame", *map(str, args.frame), "--batch-size", str(args.batch_size),
               "--n-last-frames", str(args.n_last_frames)]
        if args.input_size:
            cmd += ["--input-size", *map(str, args.input_size)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"done {name}", file=sys.stderr)

    header = f"{'model':<20} {'input':>8} {'tokens':>7} {'feat s/fr':>10} {'prop s/fr':>10} {'frames/s':>9} " \
             f"{'peak RSS MiB':>13} {'(start)':>8}"
    print(f"DAVIS label propagation, CPU, {rows[0]['threads']} threads, batch {args.batch_size}, "
          f"{args.frames} frames timed, context 1+{args.n_last_frames}")
    print(header)
    for r in rows:
        print(f"{r['model']:<20} {r['input']:>8} {r['tokens']:>7} {r['feat_s']:>10.3f} {r['prop_s']:>10.3f} "
              f"{r['fps']:>9.2f} {r['rss_peak']:>13.0f} {r['rss_start']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
