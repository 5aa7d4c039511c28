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
    from pe_dense.models.checkpoint import read_checkpoint_file, require_pe_tower, unwrap_state_dict

    if os.path.isdir(args.dst):
        raise IsADirectoryError(f"output {args.dst!r} is a directory; give a file name such as "
                                f"{os.path.join(args.dst, 'converted.pth')}")
    if not args.dst.endswith((".pt", ".pth", ".safetensors")):
        raise SystemExit(f"output {args.dst!r} must end with .pt, .pth or .safetensors")
    obj = read_checkpoint_file(args.src, trusted=args.trusted)
    if args.kind == "pe":
        from pe_dense.convert.pe import convert_pe_checkpoint
        require_pe_tower(unwrap_state_dict(obj), args.src)  # a detector file needs --kind
        sd = convert_pe_checkpoint(obj, to=args.to, patch_size=args.patch_size, pos_grid=args.pos_grid)
        atomic_save(sd, args.dst)
    else:
        from pe_dense.errors import PEDenseError

        module, fn = DETECTOR_CONVERTERS[args.kind]
        try:
            sd = getattr(importlib.import_module(module), fn)(obj)
        except PEDenseError as err:  # the converters describe the content; name the file too
            raise type(err)(f"{args.src}: {err.args[0] if err.args else err}") from err
        meta = {"converted_from": os.path.basename(args.src), "kind": args.kind}
        atomic_save(sd if args.dst.endswith(".safetensors") else {"state_dict": sd, "meta": meta}, args.dst)
    print(f"wrote {len(sd)} tensors to {args.dst}")
    return 0


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
