#!/usr/bin/env python
"""Peak memory of the PE backbone and the detectors against input size, and the pieces of high-resolution G inference.

    python benchmarks/memory.py                       # every section (about 15 minutes on 2 cores)
    python benchmarks/memory.py --sections backbone   # backbone | g_pieces | detectors

Every number is the memory one step *adds* to the process: the kernel's resident high-water mark (VmHWM, reset
through /proc/self/clear_refs before the step) minus the resident set just before it, in a fresh process per
measurement. Weights and the model's own buffers are therefore excluded and reported apart. On CPU this is the
same arithmetic a GPU runs (activations, attention, sampled values); a GPU adds its allocator's fragmentation.

How the depth is handled: a step is measured with 2 and with 4 blocks. Inference frees each block's activations
before the next, so its peak does not grow with depth; a training step keeps every block's activations for the
backward, so its peak grows by the 4-block minus 2-block difference per 2 blocks. The full depth is extrapolated
from that slope (and checked against a direct measurement for T).

Children run with glibc's mmap threshold fixed at 64 kB (``MALLOC_MMAP_THRESHOLD_``): tensors then live in their
own mappings that return to the system when freed, so a warm-up call does not leave pages resident that would hide
the measured call's peak (glibc's adaptive threshold otherwise moves freed tensors into the heap).

Reference rows ("math attention") run the same model under PyTorch's math SDPA backend, which materialises the full
attention matrix the way an explicit softmax(QK^T)V does.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _process import in_process, status_kb  # noqa: E402

MB = 1024.0


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kb("VmRSS")


def _peak_added(run) -> float:
    """MB that ``run()`` adds at its peak to the resident set."""
    base = _reset_peak()
    run()
    return (status_kb("VmHWM") - base) / MB


def _backbone(name, layers, grid, attention, mode, dtype, sdpa, queue):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer

    torch.manual_seed(0)
    cfg = get_config(name)
    window = dict(window_size=16, global_blocks=()) if attention == "window" else {}
    model = PEVisionTransformer.from_config(name, layers=layers, **window).to(getattr(torch, dtype))
    model.train(mode == "train")
    x = torch.randn(1, 3, grid * cfg.patch_size, grid * cfg.patch_size, dtype=getattr(torch, dtype))
    backend = SDPBackend.MATH if sdpa == "math" else SDPBackend.FLASH_ATTENTION

    def step():
        with sdpa_kernel(backend):
            if mode == "train":
                model.forward_features(x).float().square().mean().backward()
            else:
                with torch.no_grad():
                    model.forward_features(x)

    step()  # first call: one-off allocations (thread pools, kernels); then the measured call
    model.zero_grad(set_to_none=True)
    queue.put(_peak_added(step))


def _detector(config, overrides, size, chunk, queue):
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(overrides)
    if chunk is not None:
        cfg.model.msda_query_chunk = chunk
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model).eval()
    h, w = size
    x = torch.randn(1, 3, h, w)
    sample = DetDataSample(metainfo=dict(img_shape=(h - 32, w - 32), batch_input_shape=(h, w),
                                         ori_shape=(h - 32, w - 32), scale_factor=(1.0, 1.0), pad_shape=(h, w)))

    def step():
        with torch.no_grad():
            model.predict(x, [sample])

    queue.put(_peak_added(step))


def _weights_mb(name, dtype_bytes, **overrides) -> float:
    """Weight bytes of the full model, from 1- and 2-block builds (a full G build would take 7 GB to count)."""
    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer

    n = [sum(p.numel() for p in PEVisionTransformer.from_config(name, layers=k, **overrides).parameters())
         for k in (1, 2)]
    return (n[0] + (get_config(name).layers - 1) * (n[1] - n[0])) * dtype_bytes / 2**20


def _fmt(v: float) -> str:
    return f"{v:,.0f}"


def section_backbone(args):
    print("\n## Backbone step, peak MB added (batch 1; 2 and 4 blocks measured, full depth extrapolated)\n")
    print("| model | grid (px) | attention | step | 2 blocks | 4 blocks | full depth | full / (grid 32) |")
    print("|---|---|---|---|---|---|---|---|")
    from pe_dense.models.configs import get_config

    for name in args.models:
        cfg = get_config(name)
        for attention in ("global", "window"):
            for mode in ("infer", "train"):
                full = {}
                for grid in args.grids:
                    m2 = in_process(_backbone, name, 2, grid, attention, mode, "float32", "flash")
                    m4 = in_process(_backbone, name, 4, grid, attention, mode, "float32", "flash")
                    slope = max(m4 - m2, 0.0) / 2 if mode == "train" else 0.0
                    full[grid] = max(m2, m4) + slope * (cfg.layers - 4)
                    ratio = full[grid] / max(full[args.grids[0]], 1e-9)
                    print(f"| {name} | {grid} ({grid * cfg.patch_size}) | {attention} | {mode} | {_fmt(m2)} | "
                          f"{_fmt(m4)} | {_fmt(full[grid])} | {ratio:.1f}x (pixels {(grid / args.grids[0])**2:.0f}x)"
                          " |", flush=True)
    if "PE-Spatial-T16-512" in args.models:
        direct = in_process(_backbone, "PE-Spatial-T16-512", 12, args.grids[-1], "global", "train", "float32", "flash")
        print(f"\nCheck of the extrapolation: T, all 12 blocks, grid {args.grids[-1]}, training step measured "
              f"directly: {_fmt(direct)} MB.")


def section_g_pieces(args):
    """G as the released DETA runs it at 1824 px: 114 x 114 tokens, windows of 24, 4 global blocks, bf16."""
    print("\n## PE-Spatial G at the DETA recipe's 1824 px (114 x 114 tokens), inference, peak MB added\n")
    name = "PE-Spatial-G14-448"
    w_fp32 = _weights_mb(name, 4, patch_size=16)
    print(f"G weights: {_fmt(w_fp32)} MB in fp32, {_fmt(w_fp32 / 2)} MB in bf16 (cast once; autocast would keep "
          "both copies).\n")
    print("| piece | dtype | attention kernel | grid | peak MB added |")
    print("|---|---|---|---|---|")
    rows = [("window block (24)", "window", "bfloat16", "flash", 114),
            ("global block", "global", "bfloat16", "flash", 114),
            ("global block", "global", "float32", "flash", 114),
            ("global block", "global", "bfloat16", "math", 64),
            ("global block", "global", "bfloat16", "flash", 64)]
    for label, attention, dtype, sdpa, grid in rows:
        v = in_process(_g_block, attention, dtype, sdpa, grid)
        print(f"| {label} | {dtype} | {sdpa} | {grid} ({grid * 16} px) | {_fmt(v)} |", flush=True)
    print("\nThe math kernel's matrix grows with the square of the tokens: x(114/64)^4 = 10.1 from grid 64 to 114.")


def _g_block(attention, dtype, sdpa, grid, queue):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from pe_dense.models.pe import PEVisionTransformer

    torch.manual_seed(0)
    opts = dict(window_size=24, global_blocks=(), window_padding="zeros") if attention == "window" else {}
    model = PEVisionTransformer.from_config("PE-Spatial-G14-448", layers=1, patch_size=16, rope_mode="window",
                                            pos_embed_resize="tile", pos_grid=24, **opts)
    model = model.to(getattr(torch, dtype)).eval()
    x = torch.randn(1, 3, grid * 16, grid * 16, dtype=getattr(torch, dtype))
    backend = SDPBackend.MATH if sdpa == "math" else SDPBackend.FLASH_ATTENTION

    def step():
        with torch.no_grad(), sdpa_kernel(backend):
            model.forward_features(x)

    queue.put(_peak_added(step))


def section_detectors(args):
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    print("\n## Detectors at the recipe sizes, inference (batch 1, fp32, backbone cut to 2 blocks), peak MB added\n")
    print("| detector | size | deformable attention | peak MB added |")
    print("|---|---|---|---|")
    two_blocks = {"model.backbone.model_overrides": dict(patch_size=16, layers=2), "model.backbone.global_blocks": (1,)}
    for cfg_name, size, label in (("deta_pe_g14_coco_1824.py", 1824, "DETA-G 1824 (900 queries)"),
                                  ("deta_pe_g14_coco_1824_tta.py", 1824, "DETA-G 1824 TTA view (2000 queries)")):
        for chunk in (None, args.chunk):
            v = in_process(_detector, os.path.join(root, cfg_name), two_blocks, (size, size), chunk)
            kind = "mmcv (all queries at once)" if chunk is None else f"chunked, {chunk} queries"
            print(f"| {label} | {size} | {kind} | {_fmt(v)} |", flush=True)
    v = in_process(_detector, os.path.join(root, "mask_rcnn_pe_g14_coco.py"), two_blocks, (1024, 1024), None)
    print(f"| Mask R-CNN G 1024 | 1024 | - | {_fmt(v)} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=["backbone", "g_pieces", "detectors"],
                   choices=("backbone", "g_pieces", "detectors"))
    p.add_argument("--models", nargs="+", default=["PE-Spatial-T16-512", "PE-Spatial-S16-512", "PE-Spatial-B16-512",
                                                   "PE-Spatial-L14-448"])
    p.add_argument("--grids", nargs="+", type=int, default=[32, 64], help="token grids (side) to measure")
    p.add_argument("--chunk", type=int, default=8192, help="queries per deformable-attention chunk")
    args = p.parse_args(argv)
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # inherited by the spawned measurement processes
    sections = dict(backbone=section_backbone, g_pieces=section_g_pieces, detectors=section_detectors)
    for s in args.sections:
        sections[s](args)


if __name__ == "__main__":
    main()
