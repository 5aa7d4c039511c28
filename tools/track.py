#!/usr/bin/env python
"""Zero-shot video object tracking by label propagation on frozen PE-Spatial features.

A whole DAVIS-2017 split (writes the DAVIS result layout and J&F tables):
    python tools/track.py --davis data/DAVIS --checkpoint PE-Spatial-B16-512.pt --out-dir work_dirs/davis_B
One video file (or a folder of frames) and the mask of its first frame:
    python tools/track.py --video clip.mp4 --first-mask clip_first.png --out-dir work_dirs/clip
Protocol values come from the config; override them with --cfg-options, e.g. propagation.topk=10.
"""
import argparse
import logging
import os
import sys

from mmengine.config import Config, DictAction

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs", "tracking",
                              "davis_label_propagation.py")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--davis", metavar="DIR", help="DAVIS folder with JPEGImages/, Annotations/, ImageSets/")
    src.add_argument("--video", metavar="PATH", help="video file (mp4/mkv/avi, decoded by torchcodec) or a "
                                                     "folder of frame images")
    p.add_argument("--first-mask", metavar="PNG", help="label PNG of the first frame (required with --video)")
    p.add_argument("--gt-dir", metavar="DIR", help="with --video: folder of one label PNG per frame, to score J&F")
    p.add_argument("--sequences", nargs="+", metavar="SEQ", help="with --davis: only these sequences")
    p.add_argument("--split", help="with --davis: ImageSets split (default from config: val)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="tracking config (default: %(default)s)")
    p.add_argument("--model", help="PE config name, e.g. PE-Spatial-T16-512 (default from config)")
    p.add_argument("--checkpoint", metavar="PATH", help="PE checkpoint (.pt); random weights if omitted")
    p.add_argument("--layer", type=int, help="block whose tokens are propagated (-1 = last)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--batch-size", type=int, help="frames per forward pass")
    p.add_argument("--out-dir", required=True, help="where masks, overlays and tables go")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                   help="override config values, e.g. propagation.radius=0 output.overlay=png")
    args = p.parse_args(argv)
    if args.video and not args.first_mask:
        p.error("--video needs --first-mask (the label PNG of the first frame)")
    return args


def load_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    flags = {"model.name": args.model, "model.checkpoint": args.checkpoint, "model.layer": args.layer,
             "device": args.device, "features.batch_size": args.batch_size, "davis.split": args.split}
    cfg.merge_from_dict({k: v for k, v in flags.items() if v is not None})
    return cfg


def read_label_png_checked(path: str):
    """``read_label_png`` whose decoder failures (PIL's OSErrors) name the file and the fix."""
    from pe_dense.data.images import BadImageError
    from pe_dense.tracking.video import read_label_png

    if os.path.isdir(path):
        raise IsADirectoryError(f"mask {path!r} is a directory; pass the label PNG of the first frame")
    try:
        return read_label_png(path)
    except (OSError, SyntaxError) as err:  # PIL: UnidentifiedImageError, "image file is truncated", bad chunks
        if isinstance(err, FileNotFoundError):
            raise
        raise BadImageError(f"mask {path!r} is not a readable PNG ({err}); save the mask again as a palette ('P') "
                            "or grey-level PNG") from err


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args)

    from pe_dense.tracking.features import FeatureExtractor, build_model
    from pe_dense.tracking.metrics import JFResult, format_table, write_tables
    from pe_dense.tracking.pipeline import run_davis, run_video
    from pe_dense.tracking.video import open_frames

    model = build_model(cfg.model.name, cfg.model.checkpoint, cfg.model.overrides)
    extractor = FeatureExtractor(model, layer=cfg.model.layer, batch_size=cfg.features.batch_size,
                                 device=cfg.device, norm=cfg.model.norm, mean=cfg.data.mean, std=cfg.data.std)
    os.makedirs(args.out_dir, exist_ok=True)
    cfg.dump(os.path.join(args.out_dir, "tracking_config.py"))
    progress = not args.no_progress

    if args.davis:
        result = run_davis(args.davis, extractor, cfg, args.out_dir, sequences=args.sequences, progress=progress)
    else:
        source = open_frames(args.video)
        first_mask, palette = read_label_png_checked(args.first_mask)
        gt = None
        if args.gt_dir:
            pngs = sorted(f for f in os.listdir(args.gt_dir) if f.lower().endswith(".png"))
            if len(pngs) != len(source):
                raise SystemExit(f"--gt-dir has {len(pngs)} PNGs but the video has {len(source)} frames: give one "
                                 "ground-truth PNG per frame, named in frame order")
            gt = [read_label_png_checked(os.path.join(args.gt_dir, f))[0] for f in pngs]
        name = os.path.splitext(os.path.basename(os.path.normpath(args.video)))[0]
        res = run_video(source, first_mask, extractor, cfg, args.out_dir, name, palette=palette, gt=gt,
                        progress=progress)
        print(f"{name}: {res['frames']} frames, {res['fps']:.2f} frames/s; masks in "
              f"{os.path.join(args.out_dir, name)}; overlay {res['overlay']}")
        result = None
        if res["objects"] is not None:
            result = JFResult(res["objects"])
            write_tables(result, args.out_dir)

    if result is None:
        print("no ground truth for all frames: J&F not computed")
        return 0
    print("\nPer sequence:")
    print(format_table(result.per_sequence()))
    print("\nGlobal:")
    print(format_table([result.summary()]))
    print(f"\nJ&F {result.jf:.4f} (J {result.j_mean:.4f}, F {result.f_mean:.4f}); tables in {args.out_dir}")
    return 0


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
