#!/usr/bin/env python
"""Feature PCA of a PE-Spatial model on a real photo: writes outputs/feature_pca_<model>.png.

  python tools/demo.py [--model PE-Spatial-T16-512] [--checkpoint PE-Spatial-T16-512.pt] [--image PATH]

Without --checkpoint the model has random weights (no hub download exists): the picture then shows what an
untrained tower keeps of the image; with the released weights it shows the object-aligned PCA of the paper.
"""
import argparse
import logging
import os
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="PE-Spatial-T16-512")
    p.add_argument("--checkpoint", help="local .pt/.pth/.safetensors file of the model")
    p.add_argument("--image", help="an image file; default: scikit-image's astronaut photo")
    p.add_argument("--size", type=int, help="input side; default: the model's native size")
    p.add_argument("--layer", type=int, default=-1, help="block whose output is shown (default: last)")
    p.add_argument("--out-dir", default="outputs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import skimage.data
    import torch

    from pe_dense.data.images import preprocess, read_rgb, to_rgb
    from pe_dense.models.pe import PEVisionTransformer
    from pe_dense.vis import save_pca_figure

    img = read_rgb(args.image) if args.image else to_rgb(skimage.data.astronaut())
    model = PEVisionTransformer.from_config(args.model, checkpoint=args.checkpoint).eval()
    if args.checkpoint is None:
        logging.warning("no --checkpoint: %s has random weights", args.model)
    size = args.size or model.cfg.image_size
    x = preprocess(img, size)
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = model.forward_intermediates(x, indices=[args.layer], output_fmt="NCHW")[0][0]
    dt = time.perf_counter() - t0
    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, f"feature_pca_{args.model}.png")
    import cv2
    shown = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    weights = "random weights" if args.checkpoint is None else os.path.basename(args.checkpoint)
    save_pca_figure(shown, feats, out, title=f"{args.model} ({weights}), block {args.layer % model.cfg.layers}")
    print(f"{args.model}: {tuple(x.shape[-2:])} -> features {tuple(feats.shape)} in {dt:.2f}s; wrote {out}")
    return 0


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
