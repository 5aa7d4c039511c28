"""Helpers of the fine-tuning tests (imported by them; the fixture lives in conftest.py)."""
import json
import os

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "finetune")


def write_coco(root, name: str, coco: dict) -> str:
    path = os.path.join(root, "annotations", name)
    with open(path, "w") as f:
        json.dump(coco, f)
    return "annotations/" + name


def custom_options(root: str, **extra) -> dict:
    """--cfg-options of a run on the custom set (train = val)."""
    opts = {"data_root": root + "/", "train_ann": "annotations/train.json", "train_img": "train/",
            "val_ann": "annotations/train.json", "val_img": "train/"}
    opts.update(extra)
    return opts
