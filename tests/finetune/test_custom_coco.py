"""Fine-tuning templates: classes and num_classes from the annotation file, and the named errors users hit first."""
import copy
import os

import pytest
from _custom_data import CONFIGS, custom_options, write_coco

TEMPLATES = {"deta": ("deta_pe_t16_custom.py", ["model.bbox_head.num_classes"]),
             "mask_rcnn": ("mask_rcnn_pe_t16_custom.py", ["model.roi_head.bbox_head.num_classes",
                                                           "model.roi_head.mask_head.num_classes"])}


def _resolved(template: str, root: str, **extra):
    from pe_dense.engine.custom_coco import resolve_custom_dataset
    from pe_dense.engine.runner import build_config

    cfg = build_config(os.path.join(CONFIGS, template), custom_options(root, **extra))
    return resolve_custom_dataset(cfg)


def _get(cfg, dotted):
    node = cfg
    for key in dotted.split("."):
        node = node[key]
    return node


@pytest.mark.parametrize("detector", sorted(TEMPLATES))
def test_classes_and_num_classes_come_from_the_annotation_file(custom_coco, detector):
    root, coco = custom_coco
    template, heads = TEMPLATES[detector]
    cfg = _resolved(template, root)
    names = tuple(c["name"] for c in coco["categories"])
    assert names[0] == "thing_bottle" and len(names) == 12
    assert cfg.classes == names and cfg.num_classes == 12
    assert [_get(cfg, h) for h in heads] == [12] * len(heads)
    sanitize = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "SanitizeBoxes"]
    assert [t["num_classes"] for t in sanitize] == [12]
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        ds = cfg[loader].dataset
        assert ds.metainfo["classes"] == names and ds.ann_file == "annotations/train.json"
        assert ds.data_prefix["img"] == "train/" and ds.data_root == root + "/"
    assert cfg.val_evaluator.ann_file == os.path.join(root, "annotations/train.json")
    assert cfg.model.backbone.frozen is False
    assert _resolved(template, root, frozen_backbone=True).model.backbone.frozen is True


def test_non_contiguous_ids_map_to_labels_and_back(custom_coco):
    """mmdet's CocoDataset remaps ids 5, 8, 11, ... to labels 0..11 in the file's order; every instance's label names
    its annotation's category (hand-computed from the file)."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    root, coco = custom_coco
    cfg = _resolved("deta_pe_t16_custom.py", root)
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    ds_cfg.update(type="CocoDataset", pipeline=[], test_mode=True)
    ds = DATASETS.build(ds_cfg)
    assert ds.cat_ids == [5 + 3 * i for i in range(12)]
    name_of = {c["id"]: c["name"] for c in coco["categories"]}
    expected = sorted((a["image_id"], name_of[a["category_id"]]) for a in coco["annotations"])
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    got = sorted((info["img_id"], cfg.classes[inst["bbox_label"]]) for info in infos for inst in info["instances"])
    assert got == expected and len(got) == 27


def test_a_subset_of_classes_in_another_order_follows_the_file(custom_coco):
    root, _ = custom_coco
    cfg = _resolved("mask_rcnn_pe_t16_custom.py", root, classes=("thing_person", "thing_chair"))
    assert cfg.classes == ("thing_chair", "thing_person")  # the file's order, which mmdet's label mapping follows
    assert cfg.model.roi_head.bbox_head.num_classes == 2 and cfg.model.roi_head.mask_head.num_classes == 2


def test_class_names_absent_from_the_file_are_named(custom_coco):
    from pe_dense.engine.custom_coco import UnknownClassesError

    root, _ = custom_coco
    with pytest.raises(UnknownClassesError) as err:
        _resolved("deta_pe_t16_custom.py", root, classes=("thing_person", "thing_chiar", "zebra"))
    msg = str(err.value)
    assert "thing_chiar, zebra" in msg and "'thing_chiar' -> 'thing_chair'?" in msg and "classes=None" in msg


@pytest.mark.parametrize("defect", ["duplicate_name", "duplicate_id", "unlisted_id"])
def test_category_defects_are_named(custom_coco, defect):
    from pe_dense.engine.custom_coco import CategoryError

    root, coco = custom_coco
    bad = copy.deepcopy(coco)
    if defect == "duplicate_name":
        bad["categories"][1]["name"] = bad["categories"][0]["name"]
        expect = "duplicated category names thing_bottle"
    elif defect == "duplicate_id":
        bad["categories"][1]["id"] = bad["categories"][0]["id"]
        expect = "duplicated category ids 5"
    else:
        bad["annotations"][0]["category_id"] = 99
        bad["annotations"][1]["category_id"] = 99
        expect = "2 annotation(s) use category ids 99"
    ann = write_coco(root, f"{defect}.json", bad)
    with pytest.raises(CategoryError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        _resolved("deta_pe_t16_custom.py", root, train_ann=ann, val_ann=ann)


def test_val_file_with_other_category_ids_is_named(custom_coco):
    from pe_dense.engine.custom_coco import CategoryError

    root, coco = custom_coco
    val = copy.deepcopy(coco)
    val["categories"][2]["id"] = 1000
    for a in val["annotations"]:
        a["category_id"] = 1000 if a["category_id"] == coco["categories"][2]["id"] else a["category_id"]
    ann = write_coco(root, "val_other_ids.json", val)
    with pytest.raises(CategoryError, match="numbers differently the training classes thing_diningtable"):
        _resolved("deta_pe_t16_custom.py", root, val_ann=ann)


def test_missing_images_are_listed_and_counted(custom_coco):
    from pe_dense.engine.custom_coco import MissingImagesError

    root, coco = custom_coco
    bad = copy.deepcopy(coco)
    bad["images"] += [dict(bad["images"][0], id=100 + i, file_name=f"gone_{i}.jpg") for i in range(12)]
    ann = write_coco(root, "missing.json", bad)
    with pytest.raises(MissingImagesError) as err:
        _resolved("deta_pe_t16_custom.py", root, train_ann=ann, val_ann=ann)
    msg = str(err.value)
    assert msg.startswith("12 of 14 images listed in") and "gone_0.jpg, gone_1.jpg" in msg and "(+2 more)" in msg
    cfg = _resolved("deta_pe_t16_custom.py", root, train_ann=ann, val_ann=ann, check_images=False)
    assert cfg.num_classes == 12


def test_backbone_checkpoint_of_another_size_is_named(tmp_path):
    """A T file in the S template, and a patch-14 file in a patch-16 template: one error naming the file's model."""
    import torch
    from mmdet.registry import MODELS

    import pe_dense.mm  # noqa: F401 - registers PEBackbone
    from pe_dense.engine.runner import build_config
    from pe_dense.models.checkpoint import CheckpointMismatchError
    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer

    t16 = tmp_path / "t16.pt"
    torch.save(PEVisionTransformer(get_config("PE-Spatial-T16-512")).state_dict(), t16)
    cfg = build_config(os.path.join(CONFIGS, "deta_pe_s16_custom.py"), {"model.backbone.checkpoint": str(t16)})
    with pytest.raises(CheckpointMismatchError, match="looks like PE-Spatial-T16-512"):
        MODELS.build(cfg.model.backbone).init_weights()

    t14 = tmp_path / "t14.pt"
    torch.save(PEVisionTransformer(get_config("PE-Spatial-T16-512").replace(patch_size=14)).state_dict(), t14)
    cfg = build_config(os.path.join(CONFIGS, "mask_rcnn_pe_t16_custom.py"), {"model.backbone.checkpoint": str(t14)})
    with pytest.raises(CheckpointMismatchError, match="(?s)conv1.weight .* --patch-size 16"):
        MODELS.build(cfg.model.backbone).init_weights()


class _Runner:
    def __init__(self, model, cfg):
        self.model, self.cfg = model, cfg


def test_num_classes_mismatching_a_loaded_detector_is_named(custom_coco):
    """A detector trained on 2 classes loaded into the 12-class template: refused naming both class lists; with
    reinit_class_layers the 6 class tensors (fc_cls, fc_reg, conv_logits weights and biases) are dropped."""
    import pe_dense.heads.mask_rcnn  # noqa: F401 - registers the RoI extractor
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import pe_dense.mm  # noqa: F401 - registers PEBackbone
    from pe_dense.engine.custom_coco import ClassLayersCheckHook, NumClassesMismatchError

    register_all_modules(init_default_scope=True)
    root, _ = custom_coco
    tiny = {"model.backbone.model_overrides": dict(layers=1)}
    cfg12 = _resolved("mask_rcnn_pe_t16_custom.py", root, **tiny)
    cfg2 = _resolved("mask_rcnn_pe_t16_custom.py", root, classes=("thing_chair", "thing_person"), **tiny)
    model12, model2 = MODELS.build(cfg12.model), MODELS.build(cfg2.model)
    ckpt = {"state_dict": model2.state_dict(), "meta": {"dataset_meta": {"classes": cfg2.classes}}}
    with pytest.raises(NumClassesMismatchError) as err:
        ClassLayersCheckHook().after_load_checkpoint(_Runner(model12, cfg12), ckpt)
    msg = str(err.value)
    assert "12 classes (thing_bottle" in msg and "2 classes (thing_chair, thing_person)" in msg
    assert "roi_head.bbox_head.fc_cls.weight (3, 1024) vs (13, 1024)" in msg and "reinit_class_layers=True" in msg

    cfg12.reinit_class_layers = True
    n_before = len(ckpt["state_dict"])
    ClassLayersCheckHook().after_load_checkpoint(_Runner(model12, cfg12), ckpt)
    dropped = set(model2.state_dict()) - set(ckpt["state_dict"])
    assert n_before - len(ckpt["state_dict"]) == 6
    assert dropped == {f"roi_head.{m}.{p}" for m in ("bbox_head.fc_cls", "bbox_head.fc_reg", "mask_head.conv_logits")
                       for p in ("weight", "bias")}
    ClassLayersCheckHook().after_load_checkpoint(_Runner(model12, cfg12), {"state_dict": model12.state_dict()})


ALL_TEMPLATES = [f"{d}_pe_{s}_custom.py" for d in ("deta", "mask_rcnn") for s in ("t16", "s16", "b16", "l14", "g14")]


@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_templates_load_without_data_and_agree_with_their_backbone(name):
    """Loadable before any data exists (resolution waits for the runner); patch 16 everywhere; lr = the recipe's by the
    square-root rule for the one-GPU batch."""
    import math

    from pe_dense.engine.runner import build_config
    from pe_dense.models.configs import get_config

    cfg = build_config(os.path.join(CONFIGS, name))
    bb = cfg.model.backbone
    pe = get_config(bb.model_name).replace(**bb.model_overrides)
    assert cfg.runner_type == "CustomCocoRunner" and cfg.classes is None
    assert pe.patch_size == 16 and cfg.model.neck.in_channels == pe.width
    assert all(0 <= i < pe.layers for i in bb.global_blocks)
    assert "ClassLayersCheckHook" in [h["type"] for h in cfg.custom_hooks]
    assert all(_get(cfg, path) == 80 for path in cfg.num_classes_at)  # the base's COCO count until resolved
    batch = cfg.train_dataloader.batch_size
    assert cfg.auto_scale_lr.base_batch_size == batch
    ref_lr, ref_batch = (2e-4, 16) if name.startswith("deta") else ((5e-5, 64) if "g14" in name else (1e-4, 64))
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(ref_lr * math.sqrt(batch / ref_batch), rel=0.03)
