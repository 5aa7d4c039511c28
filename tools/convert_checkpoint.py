#!/usr/bin/env python
"""Convert checkpoints into pe_dense's layouts.

  PE towers:   python tools/convert_checkpoint.py PE-Spatial-L14-448.pt out.safetensors [--to timm] [--patch-size 16]
  Detectors:   python tools/convert_checkpoint.py mask_rcnn_PEspatial_G_coco36ep.pth out.pth \
                   --kind d2-mask-rcnn --trusted
               python tools/convert_checkpoint.py deta_coco_1824pix.pth out.pth --kind deta --trusted

Inputs may be .pt/.pth (official, timm, nested, prefixed) or .safetensors; outputs are written atomically.
"""
import argparse
import importlib
import os
import sys

# kind -> (module, function): each returns a flat state dict for our models.
DETECTOR_CONVERTERS = {
    "d2-mask-rcnn": ("pe_dense.convert.detectron2", "convert_d2_mask_rcnn"),
    "deta": ("pe_dense.convert.deta", "convert_deta_checkpoint"),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst", help="output .pth or .safetensors")
    p.add_argument("--kind", default="pe", choices=["pe", *DETECTOR_CONVERTERS],
                   help="pe: a vision tower; others: a released detector into our mmdet model")
    p.add_argument("--to", default="official", choices=["official", "timm"], help="tower layout (kind=pe)")
    p.add_argument("--patch-size", type=int, help="resize the patch kernel bicubically (e.g. 14 -> 16)")
    p.add_argument("--pos-grid", type=int, help="resample the stored position grid to this side")
    p.add_argument("--trusted", action="store_true",
                   help="allow pickled non-tensor objects (training checkpoints); only for files you trust")
    args = p.parse_args(argv)

    from pe_dense.io import atomic_save
    from pe_dense.models.checkpoint import read_checkpoint_file

    obj = read_checkpoint_file(args.src, trusted=args.trusted)
    if args.kind == "pe":
        from pe_dense.convert.pe import convert_pe_checkpoint
        sd = convert_pe_checkpoint(obj, to=args.to, patch_size=args.patch_size, pos_grid=args.pos_grid)
        atomic_save(sd, args.dst)
    else:
        module, fn = DETECTOR_CONVERTERS[args.kind]
        sd = getattr(importlib.import_module(module), fn)(obj)
        meta = {"converted_from": os.path.basename(args.src), "kind": args.kind}
        atomic_save(sd if args.dst.endswith(".safetensors") else {"state_dict": sd, "meta": meta}, args.dst)
    print(f"wrote {len(sd)} tensors to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
