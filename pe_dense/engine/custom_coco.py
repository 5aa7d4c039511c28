"""Fine-tuning on your own COCO-format dataset: the class list and ``num_classes`` come from the annotation file.

A config (``configs/finetune/*_custom.py``) names its data with top-level keys, all of which may be given on the
command line (``--cfg-options data_root=/data/mine/ train_ann=annotations/train.json ...``)::

    data_root, train_ann, train_img, val_ann, val_img   # files relative to data_root (or absolute)
    classes = None          # None: every category of train_ann; or a tuple of names (a subset)
    num_classes_at = [...]  # dotted config paths that receive the class count (the detector's heads)
    frozen_backbone, reinit_class_layers, check_images

Command-line values arrive after the config file was executed, so nothing derived from them can be computed in the
file: :func:`resolve_custom_dataset` applies them to the datasets, evaluators, heads and the ``SanitizeBoxes``
transform. ``pe_dense.engine.runner.build_config`` (tools/train.py, tools/test.py) calls it for configs with
``runner_type='CustomCocoRunner'``, and that runner calls it again (idempotent) for configs built otherwise; the
runner writes the resolved config (explicit classes and counts) to its work dir.

Category ids: mmdet's ``CocoDataset`` maps the annotation file's category ids, in the file's order of
``categories``, to contiguous labels 0..K-1, and ``CocoMetric`` maps them back, so ids need not be contiguous
(1, 5, 90 work; result JSONs carry the original ids). We therefore remap rather than refuse, and name only what
would silently go wrong: duplicated ids or names, annotations whose category is not listed, class names the file
lacks. A subset given in another order is put into the file's order, because that is the order mmdet's mapping
follows (names and labels would otherwise disagree).
"""
from __future__ import annotations

import copy
import difflib
import json
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS, RUNNERS
from mmengine.runner import Runner

from pe_dense.errors import PEDenseError

MAX_LISTED = 10


class CustomDataError(PEDenseError, ValueError):
    """A COCO-format dataset that cannot be trained on as configured (the message names the fix)."""


class UnknownClassesError(CustomDataError):
    pass


class CategoryError(CustomDataError):
    pass


class MissingImagesError(CustomDataError):
    pass


class NumClassesMismatchError(CustomDataError):
    pass


def _listed(items: Sequence, n: int = MAX_LISTED) -> str:
    items = list(items)
    more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def _info(msg: str, level: int = logging.INFO) -> None:
    print_log(msg, logger="current", level=level)


def read_coco(path: str) -> dict:
    if not osp.isfile(path):
        raise FileNotFoundError(f"annotation file {path!r} does not exist: set data_root and train_ann/val_ann "
                                "(--cfg-options data_root=/data/mine/ train_ann=annotations/train.json)")
    with open(path) as f:
        coco = json.load(f)
    if not isinstance(coco, dict) or not coco.get("categories"):
        raise CategoryError(f"{path} lists no 'categories': a COCO-format file needs "
                            "categories=[{'id': 1, 'name': 'cat'}, ...]")
    return coco


def check_categories(coco: dict, path: str) -> List[dict]:
    """The file's categories, after refusing duplicated ids/names and annotations of unlisted categories."""
    cats = coco["categories"]
    ids, names = [c["id"] for c in cats], [c["name"] for c in cats]
    for label, values in (("ids", ids), ("names", names)):
        dup = sorted({v for v in values if values.count(v) > 1}, key=str)
        if dup:
            raise CategoryError(f"{path}: duplicated category {label} {_listed(dup)}. mmdet maps categories by "
                                "name to labels, so every category needs its own id and name: merge or rename them")
    known = set(ids)
    unknown = sorted({a["category_id"] for a in coco.get("annotations", []) if a["category_id"] not in known})
    if unknown:
        n = sum(a["category_id"] not in known for a in coco["annotations"])
        raise CategoryError(f"{path}: {n} annotation(s) use category ids {_listed(unknown)}, which 'categories' does "
                            "not list (mmdet would drop them silently). Add those categories or remove the annotations")
    if ids and ids != list(range(ids[0], ids[0] + len(ids))):
        _info(f"{path}: category ids {_listed(ids)} are not contiguous; mmdet maps them to labels 0..{len(ids) - 1} "
              "in this order, and result JSON files carry the original ids")
    return cats


def resolve_classes(cats: List[dict], wanted: Optional[Sequence[str]], path: str) -> Tuple[Tuple[str, ...], list]:
    """(class names, category ids) in the file's order: all categories, or the ``wanted`` subset."""
    names = [c["name"] for c in cats]
    if wanted is None:
        return tuple(names), [c["id"] for c in cats]
    if isinstance(wanted, str):
        wanted = (wanted,)
    absent = [n for n in wanted if n not in names]
    if absent:
        hints = [f"{n!r} -> {close[0]!r}?" for n in absent for close in [difflib.get_close_matches(n, names, 1)]
                 if close]
        raise UnknownClassesError(
            f"classes {_listed(absent)} of the config are not categories of {path} (it has {len(names)}: "
            f"{_listed(names)}). {('Did you mean ' + ', '.join(hints) + '. ') if hints else ''}Fix `classes` "
            "(--cfg-options \"classes=('a','b')\") or set classes=None to train on every category of the file")
    chosen = [c for c in cats if c["name"] in set(wanted)]
    if [c["name"] for c in chosen] != list(wanted):
        _info(f"classes reordered to the order of {path} ({_listed([c['name'] for c in chosen])}): mmdet assigns "
              "labels in the file's order", logging.WARNING)
    return tuple(c["name"] for c in chosen), [c["id"] for c in chosen]


def check_images_on_disk(coco: dict, img_dir: str, path: str) -> None:
    """Raise listing every image of the annotation file that is not on disk (the first few by name)."""
    missing = [im["file_name"] for im in coco.get("images", []) if not osp.isfile(osp.join(img_dir, im["file_name"]))]
    if missing:
        raise MissingImagesError(
            f"{len(missing)} of {len(coco['images'])} images listed in {path} are not in {img_dir!r}: "
            f"{_listed(missing)}. Point data_root/train_img/val_img at the image folder, copy the files, or drop "
            "their entries from the annotation file (check_images=False skips this check; training then skips them)")


def _full(root: str, rel: str) -> str:
    return rel if osp.isabs(rel) or "://" in rel else osp.join(root, rel)


def _datasets(cfg: Config, loader: str):
    ds = (cfg.get(loader) or {}).get("dataset")
    while ds is not None and "dataset" in ds:  # RepeatDataset, ClassBalancedDataset, ...
        ds = ds["dataset"]
    return ds


def _set_path(cfg: Config, dotted: str, value) -> None:
    node = cfg
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if leaf not in node:
        raise KeyError(f"num_classes_at names {dotted!r}, which this config lacks; list the heads' num_classes keys")
    node[leaf] = value


def _set_sanitize(node, num_classes: int) -> None:
    if isinstance(node, dict):
        if node.get("type") == "SanitizeBoxes":
            node["num_classes"] = num_classes
        for v in node.values():
            _set_sanitize(v, num_classes)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _set_sanitize(v, num_classes)


def resolve_custom_dataset(cfg: Config, missing_ok: bool = False) -> Config:
    """Apply the data keys of a ``configs/finetune`` config (see the module doc) in place; returns ``cfg``.

    ``missing_ok``: leave ``cfg`` as it is when the training annotation file does not exist (a config loaded without
    data, e.g. to inspect it); building the runner resolves again and names the missing file.
    """
    root = cfg.data_root
    train_ann, val_ann = _full(root, cfg.train_ann), _full(root, cfg.get("val_ann") or cfg.train_ann)
    if missing_ok and not osp.isfile(train_ann):
        return cfg
    train_coco = read_coco(train_ann)
    classes, cat_ids = resolve_classes(check_categories(train_coco, train_ann), cfg.get("classes"), train_ann)
    val_coco = train_coco if val_ann == train_ann else read_coco(val_ann)
    if val_coco is not train_coco:
        val_cats = {c["name"]: c["id"] for c in check_categories(val_coco, val_ann)}
        differ = [n for n, i in zip(classes, cat_ids) if val_cats.get(n) != i]
        if differ:
            raise CategoryError(f"{val_ann} lacks or numbers differently the training classes {_listed(differ)} "
                                f"(ids in {train_ann}: {dict(zip(classes, cat_ids))}). Give both files the same "
                                "categories")
    used = {a["category_id"] for a in train_coco.get("annotations", [])}
    unused = [n for n, i in zip(classes, cat_ids) if i not in used]
    if unused:
        _info(f"{train_ann}: classes {_listed(unused)} have no training annotations", logging.WARNING)
    if cfg.get("check_images", True):
        check_images_on_disk(train_coco, _full(root, cfg.train_img), train_ann)
        if val_coco is not train_coco or cfg.val_img != cfg.train_img:
            check_images_on_disk(val_coco, _full(root, cfg.val_img), val_ann)

    for loader, ann, img in (("train_dataloader", cfg.train_ann, cfg.train_img),
                             ("val_dataloader", cfg.get("val_ann") or cfg.train_ann, cfg.val_img),
                             ("test_dataloader", cfg.get("val_ann") or cfg.train_ann, cfg.val_img)):
        ds = _datasets(cfg, loader)
        if ds is not None:
            ds.update(data_root=root, ann_file=ann, data_prefix=dict(img=img))
            ds.metainfo = dict(ds.get("metainfo") or {}, classes=classes)
    for name in ("val_evaluator", "test_evaluator"):
        if cfg.get(name) is not None:
            cfg[name].ann_file = val_ann
    for dotted in cfg.num_classes_at:
        _set_path(cfg, dotted, len(classes))
    _set_sanitize([cfg.get("train_dataloader"), cfg.get("train_pipeline")], len(classes))
    cfg.model.backbone.frozen = bool(cfg.get("frozen_backbone", False))
    cfg.classes, cfg.num_classes = classes, len(classes)
    _info(f"{len(classes)} classes from {train_ann}: {_listed(classes, 20)}")
    return cfg


@RUNNERS.register_module()
class CustomCocoRunner(Runner):
    """mmengine's Runner, building from a config whose classes come from its annotation file."""

    @classmethod
    def from_cfg(cls, cfg: Config) -> Runner:
        return super().from_cfg(resolve_custom_dataset(copy.deepcopy(cfg)))


def class_layer_mismatch(model, state_dict: Dict, num_classes: int) -> List[Tuple[str, tuple, tuple]]:
    """Keys whose tensors differ in shape between ``state_dict`` and ``model`` along a class dimension
    (K, K + 1 or 4K rows: classification, box-regression and mask logits layers)."""
    own = model.state_dict()
    class_rows = {num_classes, num_classes + 1, 4 * num_classes}
    out = []
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        mine = own.get(key)
        if mine is None or not hasattr(value, "shape") or tuple(value.shape) == tuple(mine.shape):
            continue
        same_rest = tuple(value.shape[1:]) == tuple(mine.shape[1:])
        if "head." in key and mine.ndim >= 1 and mine.shape[0] in class_rows and same_rest:
            out.append((key, tuple(value.shape), tuple(mine.shape)))
    return out


@HOOKS.register_module()
class ClassLayersCheckHook(Hook):
    """Refuse a ``load_from`` detector whose class layers were made for another number of classes, naming both
    class lists; with ``reinit=True`` drop those layers (they keep their fresh initialisation) and load the rest.

    mmengine's non-strict load only logs shape mismatches, so fine-tuning a COCO detector on 3 classes would run
    with silently re-initialised class layers, and evaluating it would score random ones.
    """

    priority = "VERY_HIGH"

    def __init__(self, reinit: Optional[bool] = None):
        self.reinit = reinit  # None: the config's top-level `reinit_class_layers`

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        classes = runner.cfg.get("classes") or ()
        sd = checkpoint.get("state_dict", checkpoint)
        bad = class_layer_mismatch(model, sd, len(classes))
        if not bad:
            return
        theirs = (checkpoint.get("meta") or {}).get("dataset_meta", {}).get("classes")
        reinit = self.reinit if self.reinit is not None else bool(runner.cfg.get("reinit_class_layers", False))
        if not reinit:
            raise NumClassesMismatchError(
                f"the loaded detector's class layers do not fit this config's {len(classes)} classes "
                f"({_listed(classes)}); the checkpoint was trained on "
                f"{f'{len(theirs)} classes ({_listed(theirs)})' if theirs else 'another class count'}: "
                f"{_listed(f'{k} {a} vs {b}' for k, a, b in bad)}. To fine-tune from it on your classes set "
                "reinit_class_layers=True (everything else loads); to evaluate it, use a config with its classes")
        for key, _, _ in bad:
            sd.pop(key, None)
            sd.pop("module." + key, None)
        _info(f"reinit_class_layers: {len(bad)} class layer tensor(s) of the checkpoint dropped and kept freshly "
              f"initialised for {len(classes)} classes: {_listed(k for k, _, _ in bad)}", logging.WARNING)
