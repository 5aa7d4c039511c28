"""The templates through tools/train.py exactly as a user runs them: data, classes and weights from --cfg-options."""
import glob
import importlib.util
import os

import pytest
import torch
from _custom_data import CONFIGS

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")


def _train_main():
    spec = importlib.util.spec_from_file_location("pe_train_tool", os.path.join(TOOLS, "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# The heads at 64 channels and few RoIs: at the recipe's 256 channels and 512/1000 RoIs, the 4-conv heads alone cost
# about 100 GFLOP per image, minutes on a shared 2-core CPU.
SMALL_HEADS = [f"model.{k}=64" for k in (
    "neck.out_channels", "rpn_head.in_channels", "rpn_head.feat_channels", "roi_head.bbox_roi_extractor.out_channels",
    "roi_head.bbox_head.in_channels", "roi_head.bbox_head.conv_out_channels", "roi_head.bbox_head.fc_out_channels",
    "roi_head.mask_roi_extractor.out_channels", "roi_head.mask_head.in_channels",
    "roi_head.mask_head.conv_out_channels")] + [
    "model.train_cfg.rpn_proposal.max_per_img=64", "model.train_cfg.rcnn.sampler.num=32",
    "model.test_cfg.rpn.max_per_img=64"]


def _argv(root, work_dir, checkpoint, *extra):
    """A 1-block T backbone at 128 px with small heads, one epoch of 1 iteration (2 photos, batch 2)."""
    return [os.path.join(CONFIGS, "mask_rcnn_pe_t16_custom.py"), "--work-dir", str(work_dir), "--cfg-options",
            *SMALL_HEADS,
            f"data_root={root}/", "train_ann=annotations/train.json", "train_img=train/",
            "val_ann=annotations/train.json", "val_img=train/", f"model.backbone.checkpoint={checkpoint}",
            "model.backbone.model_overrides.layers=1", "model.backbone.global_blocks=()",
            "model.data_preprocessor.pad_size_divisor=128", "train_dataloader.dataset.pipeline.3.scale=(128,128)",
            "train_dataloader.dataset.pipeline.4.crop_size=(128,128)",
            "val_dataloader.dataset.pipeline.1.scale=(128,128)", "test_dataloader.dataset.pipeline.1.scale=(128,128)",
            "train_cfg.max_epochs=1", "train_cfg.val_interval=1",
            "default_hooks.checkpoint.interval=1", "train_dataloader.num_workers=0",
            "train_dataloader.persistent_workers=False", "val_dataloader.num_workers=0",
            "val_dataloader.persistent_workers=False", "log_level=WARNING", *extra]


@pytest.fixture
def one_thread():
    """One torch thread: on a shared, busy CPU two OpenMP threads spin and run this 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_tool_runs_a_template_with_classes_from_the_file(custom_coco, tmp_path, one_thread):
    from mmengine.config import Config

    from pe_dense.engine.custom_coco import NumClassesMismatchError
    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer

    root, coco = custom_coco
    names = tuple(c["name"] for c in coco["categories"])
    pe = tmp_path / "pe_t16_1block.pt"
    torch.save(PEVisionTransformer(get_config("PE-Spatial-T16-512").replace(layers=1)).state_dict(), pe)
    train = _train_main()
    train(_argv(root, tmp_path / "run12", pe))
    ckpt_path = sorted(glob.glob(str(tmp_path / "run12" / "epoch_1.pth")))[0]
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert tuple(ckpt["meta"]["dataset_meta"]["classes"]) == names
    assert ckpt["state_dict"]["roi_head.bbox_head.fc_cls.weight"].shape[0] == 13  # 12 classes + background
    dumped = Config.fromfile(str(tmp_path / "run12" / "mask_rcnn_pe_t16_custom.py"))
    assert dumped.classes == names and dumped.model.roi_head.mask_head.num_classes == 12

    subset = ["classes=('thing_chair','thing_person')", f"load_from={ckpt_path}"]
    with pytest.raises(NumClassesMismatchError, match="12 classes"):
        train(_argv(root, tmp_path / "run2", pe, *subset))
    train(_argv(root, tmp_path / "run2b", pe, *subset, "reinit_class_layers=True"))
    ckpt2 = torch.load(str(tmp_path / "run2b" / "epoch_1.pth"), map_location="cpu", weights_only=False)
    assert tuple(ckpt2["meta"]["dataset_meta"]["classes"]) == ("thing_chair", "thing_person")
    assert ckpt2["state_dict"]["roi_head.bbox_head.fc_cls.weight"].shape[0] == 3
