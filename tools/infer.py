#!/usr/bin/env python
"""Run a trained detector, segmentation probe or depth head on your images and videos.

  python tools/infer.py CONFIG CHECKPOINT INPUT... --out-dir DIR [--precision bf16] [--batch-size 4]

INPUT: image files, folders (their images), quoted glob patterns ('photos/**/*.jpg') and video files (mp4, mkv, avi,
mov, webm; decoded by torchcodec). CHECKPOINT 'none' runs random weights (for trying the tool only). The task
follows the config: mmdet configs detect, mmseg configs segment or, with a depth metric, estimate depth.

Writes into DIR:
  vis/<image>.png            drawings: boxes + masks (detection), palette overlay (segmentation), photo | colour
                             map (depth)
  <video>.mp4                the overlay video of each video input (frames drawn as above)
  results.json, images.json  detection: COCO-format results (pycocotools ``COCO.loadRes``) and the image list they
                             refer to (ids, file names, sizes; video frames are 'clip.mp4#000012')
  pred/<image>.png           segmentation: label maps (palette PNG); depth: uint16 millimetres (NYU's format)

Precision: ``--precision bf16|fp16`` casts the matmul weights once (norms, softmax and box decoding stay fp32); see
pe_dense/apis/precision.py. bf16 on CPUs with AVX-512 bf16/AMX and on Ampere+ GPUs; fp16 on GPUs.

Memory for G (and large inputs). Activation checkpointing saves nothing at inference (there is no backward pass to
keep activations for); what bounds memory is:
  - the test scale: DETA-G tests at 1728/1824 px, Mask R-CNN-G at 1024; a smaller Resize scale in the test pipeline
    (e.g. 1280 for DETA, via --cfg-options or a copy of the config) cuts the backbone's tokens, and with them
    activations and attention work, by the square of the ratio (accuracy drops somewhat off the trained scale);
  - fewer queries (DETA): ``model.num_queries=300`` (the G configs use 900; TTA configs 2000) shrinks the decoder and
    the two-stage proposal selection;
  - no TTA: the ``*_tta.py`` configs run 2 flips x several scales per image; this tool always runs the plain model;
  - bf16 weights (``--precision bf16``): halves the weights (G's 1.85 B backbone parameters: 7.4 GB -> 3.7 GB) and
    the matmul inputs (activations between modules stay fp32);
  - ``--batch-size 1`` (the default): memory grows linearly with the batch;
  - Mask R-CNN: ``model.test_cfg.rcnn.max_per_img`` bounds the masks pasted at full image size.
"""
import argparse
import json
import os
import sys

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm")


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint", help="trained checkpoint, or 'none' for random weights")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, folders, globs, video files")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--task", choices=("auto", "det", "seg", "depth"), default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--batch-size", type=int, default=1, help="images (or video frames) per forward pass")
    p.add_argument("--score-thr", type=float, default=0.3, help="detection: lowest score drawn (all are saved)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                   help="override config values, e.g. model.num_queries=300")
    return p.parse_args(argv)


def pick_task(cfg) -> str:
    if cfg.get("default_scope") == "mmdet":
        return "det"
    evaluator = str((cfg.get("test_evaluator") or {}).get("type", ""))
    return "depth" if "Depth" in evaluator else "seg"


def build_predictor(task: str, args):
    from pe_dense import apis

    cls = {"det": apis.Detector, "seg": apis.Segmenter, "depth": apis.DepthEstimator}[task]
    ckpt = None if args.checkpoint.lower() == "none" else args.checkpoint
    return cls(args.config, ckpt, device=args.device, precision=args.precision, batch_size=args.batch_size,
               cfg_options=args.cfg_options)


def collect(inputs):
    """(images as [(name, path)], videos as [path]) from the command line."""
    from pe_dense.apis.inputs import expand_paths

    images, videos = [], []
    for spec in inputs:
        if os.path.isfile(spec) and spec.lower().endswith(VIDEO_EXTENSIONS):
            videos.append(spec)
        else:
            images += [(p, p) for p in expand_paths(spec)]
    return images, videos


class Outputs:
    """Writes each result as it comes: drawing, prediction file, COCO entries."""

    def __init__(self, out_dir: str, task: str, score_thr: float):
        self.out_dir, self.task, self.score_thr = out_dir, task, score_thr
        self.coco, self.images, self.names = [], [], set()
        os.makedirs(os.path.join(out_dir, "vis"), exist_ok=True)

    def unique(self, path: str) -> str:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, i = stem, 1
        while name in self.names:
            name, i = f"{stem}_{i}", i + 1
        self.names.add(name)
        return name

    def drawing(self, res, image=None):
        if self.task == "det":
            return res.draw(self.score_thr, image=image)
        return res.draw(image=image)

    def add(self, res, file_name: str, size, image=None, save_vis: bool = True):
        import cv2
        import numpy as np

        if self.task == "det":
            image_id = len(self.images) + 1
            self.images.append(dict(id=image_id, file_name=file_name, height=int(size[0]), width=int(size[1])))
            self.coco += res.to_coco(image_id)
        if not save_vis:
            return self.drawing(res, image)
        name = self.unique(file_name)
        picture = cv2.cvtColor(self.drawing(res), cv2.COLOR_RGB2BGR)
        cv2.imwrite(os.path.join(self.out_dir, "vis", name + ".png"), picture)
        if self.task == "seg":
            from pe_dense.tracking.video import write_label_png

            write_label_png(os.path.join(self.out_dir, "pred", name + ".png"), res.labels, res.palette)
        elif self.task == "depth":
            os.makedirs(os.path.join(self.out_dir, "pred"), exist_ok=True)
            mm = np.clip(np.nan_to_num(res.depth) * 1000.0, 0, 65535).round().astype(np.uint16)
            cv2.imwrite(os.path.join(self.out_dir, "pred", name + ".png"), mm)
        return None

    def close(self):
        if self.task == "det":
            for fname, obj in (("results.json", self.coco), ("images.json", dict(images=self.images))):
                with open(os.path.join(self.out_dir, fname), "w") as f:
                    json.dump(obj, f)


def main(argv=None) -> int:
    args = parse_args(argv)
    import logging

    from tqdm import tqdm

    from pe_dense.apis.base import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    images, videos = collect(args.inputs)
    task = args.task if args.task != "auto" else pick_task(load_config(args.config, args.cfg_options))
    predictor = build_predictor(task, args)
    out = Outputs(args.out_dir, task, args.score_thr)

    from pe_dense.tracking.video import OverlayWriter, VideoFileFrames

    sources = [VideoFileFrames(v) for v in videos]
    bar = tqdm(total=len(images) + sum(len(s) for s in sources), unit="img", disable=args.no_progress)
    for res in predictor.iter_results(images):
        out.add(res, res.path, res.image_size if task == "det" else _size(res))
        bar.update(1)
    for video, source in zip(videos, sources):
        name = out.unique(video)
        writer = OverlayWriter(os.path.join(args.out_dir, name), fps=source.fps, mode="mp4")
        index = 0
        try:
            for batch in source.iter_batches(args.batch_size):
                items = [(f"{video}#{index + i:06d}", frame) for i, frame in enumerate(batch)]
                for (frame_name, frame), res in zip(items, predictor.iter_results(items)):
                    writer.write(out.add(res, os.path.basename(frame_name), frame.shape[:2], image=frame,
                                         save_vis=False))
                    bar.update(1)
                index += len(batch)
        finally:
            writer.close()
    bar.close()
    out.close()
    print(f"{len(images)} images, {len(videos)} videos -> {args.out_dir}")
    return 0


def _size(res):
    return (res.labels if hasattr(res, "labels") else res.depth).shape[:2]


if __name__ == "__main__":
    from pe_dense.cli import run_cli

    sys.exit(run_cli(main))
