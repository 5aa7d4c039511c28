"""tools/train.py and tools/test.py as a user runs them (subprocesses) on a COCO set built from the corpus: training
uses every readable oddity (EXIF-rotated, grey, 16-bit, RGBA, CMYK, 1x1) and skips the bad files and the 10000x10
strip (max_aspect_ratio) with a warning; testing on that set ends in one error line naming the first bad file (raised
in a DataLoader worker, so the message arrives wrapped in the worker's traceback)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from _bad_input_corpus import IMAGE_CASES

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIG = os.path.join(ROOT, "configs", "demo", "mask_rcnn_pe_t16_demo.py")
# 6 iterations at batch 2 = one pass of the sampler's permutation of the 12 images: every file is visited.
TINY = ["model.backbone.model_overrides.layers=1", "train_cfg.max_iters=6", "train_cfg.val_interval=7",
        "default_hooks.checkpoint.interval=6", "default_hooks.logger.interval=1",
        "train_dataloader.dataset.pipeline.3.scale=(64,64)", "test_dataloader.dataset.pipeline.1.scale=(64,64)"]


def coco_from(images_dir, names, out_dir):
    """A COCO set with one centred box per image (sizes as the images are displayed, EXIF applied)."""
    from pe_dense.data.images import read_rgb

    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    images, anns = [], []
    for i, name in enumerate(names, 1):
        shutil.copy(os.path.join(images_dir, name), os.path.join(out_dir, "images", name))
        try:
            h, w = read_rgb(os.path.join(images_dir, name)).shape[:2]
        except ValueError:
            h, w = 48, 64  # a bad file: its entry says what the photo would have been
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        bw, bh = max(w / 2, 1.0), max(h / 2, 1.0)
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [(w - bw) / 2, (h - bh) / 2, bw, bh],
                     "area": bw * bh, "iscrowd": 0, "segmentation": [[(w - bw) / 2, (h - bh) / 2, (w + bw) / 2,
                                                                      (h - bh) / 2, (w + bw) / 2, (h + bh) / 2]]})
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    with open(os.path.join(out_dir, "annotations", "demo.json"), "w") as f:  # the demo config's ann_file
        json.dump(data, f)
    return out_dir


def run(tool, args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PE_DENSE_DEBUG="")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_train_on_odd_images_then_test_on_a_truncated_one(corpus, tmp_path):
    readable = [n for n, e in IMAGE_CASES.items() if e == "ok" and n not in ("good.jpg", "good.png")]
    bad = ["truncated.jpg", "text_renamed.jpg", "empty.jpg"]
    data = coco_from(corpus["images"], readable + bad, str(tmp_path / "data"))
    opts = ["--cfg-options", f"data_root={data}", "classes=('person',)",
            "model.roi_head.bbox_head.num_classes=1", "model.roi_head.mask_head.num_classes=1",
            "train_dataloader.dataset.filter_cfg.filter_empty_gt=False"]
    no_val = ["val_cfg=None", "val_dataloader=None", "val_evaluator=None"]  # validation would stop at a bad file
    train = run("train.py", [CONFIG, "--work-dir", "wd", *opts, *TINY, *no_val], cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-4000:]
    log = train.stdout + train.stderr
    for name in bad + ["wide_10000x10.png"]:  # the strip: max_aspect_ratio (mmdet's Resize would crash)
        assert f"skipping image {os.path.join(data, 'images', name)}" in log
    ckpt = tmp_path / "wd" / "iter_6.pth"
    assert ckpt.is_file()
    test = run("test.py", [CONFIG, str(ckpt), "--work-dir", "wd_test", *opts, "test_dataloader.num_workers=1",
                           *TINY[:1], TINY[-1]], cwd=tmp_path)
    assert test.returncode == 2, test.stderr[-4000:]
    last = test.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot read image ") and "Traceback" not in test.stderr
    assert any(name in last for name in bad + ["wide_10000x10.png"]) and "Fix or remove the file" in last
