#!/usr/bin/env python
"""Export the bare PE-Spatial backbone as a fixed-size feature extractor (ONNX, torch.export or OpenVINO).

    python tools/export.py --model-name PE-Spatial-T16-512 --layers 5 11 --size 512 512 --format onnx \
        --checkpoint PE-Spatial-T16-512.pt --out exports/
    python tools/export.py --model-name PE-Spatial-B16-512 --layers -1 --size 448 640 --fp16 --batch 1

Writes <out>/<model>_<H>x<W>_<precision>.{onnx,pt2,xml} and the same metadata as JSON beside it. Without
--checkpoint the weights are random (with a warning). Run the artefact with pe_dense.deploy (numpy + onnxruntime).
"""
import argparse
import logging
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-name", required=True, help="PE config, e.g. PE-Spatial-T16-512")
    p.add_argument("--layers", type=int, nargs="+", default=[-1],
                   help="0-based blocks whose feature maps are outputs (negatives count from the end; default -1)")
    p.add_argument("--format", default="onnx", choices=("onnx", "torch-export", "openvino"))
    p.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"),
                   help="input size baked into the graph (multiples of the patch size)")
    p.add_argument("--batch", default="dynamic", help="a fixed batch size N or 'dynamic' (default)")
    p.add_argument("--fp16", action="store_true", help="fp16 weights and MLPs; LayerNorm and attention stay fp32")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--out", default="exports", help="output directory (default: %(default)s)")
    p.add_argument("--checkpoint", metavar="PATH", help="PE weights; random init (with a warning) if omitted")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.batch != "dynamic" and not (args.batch.isdigit() and int(args.batch) > 0):
        sys.exit(f"--batch must be a positive integer or 'dynamic', got {args.batch!r}")
    from pe_dense.export.baked import SizeNotServedError
    from pe_dense.export.feature_extractor import export_backbone

    try:
        path = export_backbone(args.model_name, args.layers, tuple(args.size), args.out, fmt=args.format,
                               batch=args.batch if args.batch == "dynamic" else int(args.batch), fp16=args.fp16,
                               opset=args.opset, checkpoint=args.checkpoint)
    except SizeNotServedError as e:
        sys.exit(str(e))
    logging.getLogger("export").info("artefact: %s", path)


if __name__ == "__main__":
    main()
