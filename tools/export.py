#!/usr/bin/env python
"""Export a detector config or the bare PE-Spatial backbone (ONNX, torch.export or OpenVINO), one artefact each.

Detectors (DETA, Mask R-CNN): fixed-size outputs boxes [B,K,4], scores [B,K], labels [B,K], num_dets [B]
(+ masks [B,K,28,28] for Mask R-CNN), NMS inside the graph:

    python tools/export.py configs/mask_rcnn_pe_t16_coco.py work_dirs/x/iter_90000.pth --size 1024 1024 \
        --format onnx --out exports/ [--orig-size] [--max-dets 100] [--batch N|dynamic] [--fp16] [--opset N]

The bare backbone as a feature extractor (no CONFIG):

    python tools/export.py --model-name PE-Spatial-T16-512 --layers 5 11 --size 512 512 --format onnx \
        --checkpoint PE-Spatial-T16-512.pt --out exports/

Writes <out>/<name>.{onnx,pt2,xml} and the same metadata as JSON beside it. Run the artefact with pe_dense.deploy
(numpy + onnxruntime).
"""
import argparse
import logging
import sys


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="detector config (DETA or Mask R-CNN); omit for the bare backbone")
    p.add_argument("detector_checkpoint", nargs="?", metavar="CHECKPOINT",
                   help="the detector's trained checkpoint (required with CONFIG; 'random' exports random weights)")
    p.add_argument("--model-name", help="bare backbone mode: PE config, e.g. PE-Spatial-T16-512")
    p.add_argument("--layers", type=int, nargs="+", default=[-1],
                   help="bare backbone: 0-based blocks whose maps are outputs (negatives from the end; default -1)")
    p.add_argument("--format", default="onnx", choices=("onnx", "torch-export", "openvino"))
    p.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"),
                   help="input size baked into the graph (multiples of the patch size)")
    p.add_argument("--batch", default="dynamic", help="a fixed batch size N or 'dynamic' (default)")
    p.add_argument("--fp16", action="store_true", help="fp16 PE weights and MLPs; LayerNorm and attention stay fp32")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default: 17 for the backbone, 18 for DETA and Mask R-CNN)")
    p.add_argument("--out", default="exports", help="output directory (default: %(default)s)")
    p.add_argument("--checkpoint", metavar="PATH", help="bare backbone: PE weights; random init if omitted")
    p.add_argument("--orig-size", action="store_true",
                   help="detectors: add an orig_hw (B, 2) input and return boxes in original-image pixels")
    p.add_argument("--max-dets", type=int, default=100, help="detectors: output slots K (default: %(default)s)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                   help="detectors: override config settings, key=value (as tools/test.py)")
    return p.parse_args(argv)


def _check(args):
    if args.batch != "dynamic" and not (args.batch.isdigit() and int(args.batch) > 0):
        sys.exit(f"--batch must be a positive integer or 'dynamic', got {args.batch!r}")
    if args.config and args.model_name:
        sys.exit("give either a detector CONFIG CHECKPOINT or --model-name for the bare backbone, not both")
    if not args.config and not args.model_name:
        sys.exit("nothing to export: give a detector CONFIG CHECKPOINT, or --model-name PE-Spatial-... --layers ...")
    if args.config and not args.detector_checkpoint:
        sys.exit("a detector export needs its CHECKPOINT after the CONFIG (or 'random' for random weights)")
    if args.max_dets <= 0:
        sys.exit(f"--max-dets must be positive, got {args.max_dets}")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _check(args)
    from pe_dense.export.baked import SizeNotServedError

    batch = args.batch if args.batch == "dynamic" else int(args.batch)
    try:
        if args.config:
            from pe_dense.export.detectors import export_detector

            ckpt = None if args.detector_checkpoint == "random" else args.detector_checkpoint
            path = export_detector(args.config, ckpt, tuple(args.size), args.out, fmt=args.format, batch=batch,
                                   fp16=args.fp16, opset=args.opset, orig_size=args.orig_size,
                                   max_dets=args.max_dets, cfg_options=args.cfg_options)
        else:
            from pe_dense.export.feature_extractor import export_backbone

            path = export_backbone(args.model_name, args.layers, tuple(args.size), args.out, fmt=args.format,
                                   batch=batch, fp16=args.fp16, opset=args.opset, checkpoint=args.checkpoint)
    except SizeNotServedError as e:
        sys.exit(str(e))
    logging.getLogger("export").info("artefact: %s", path)


if __name__ == "__main__":
    main()
