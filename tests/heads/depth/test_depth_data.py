"""Real RGB-D demo data (NYU layout), the config pipelines on it, and named errors for bad depth files."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS, TRANSFORMS
from pe_dense.heads.depth import DepthDataError

from pe_dense.data.demo_depth import build_demo_depth, demo_rgbd, depth_to_uint16_mm, disparity_to_depth

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return build_demo_depth(tmp_path_factory.mktemp("nyu_demo"), size=(120, 160))


def test_disparity_to_depth_by_hand():
    depth = disparity_to_depth(np.array([100.0, np.inf, 0.0]))
    assert depth[0] == pytest.approx(994.978 * 0.193001 / (100.0 + 31.086), rel=1e-6)
    assert np.isnan(depth[1:]).all()
    assert depth_to_uint16_mm(np.array([1.2344, np.nan, np.inf, -1.0, 70.0])).tolist() == [1234, 0, 0, 0, 0]


def test_real_rgbd_sources_have_invalid_pixels_and_plausible_depth():
    samples = demo_rgbd(size=None)
    rgb, depth = samples["arc2017_0"]
    assert rgb.shape == (480, 640, 3) and depth.shape == (480, 640)
    assert np.isnan(depth).any() and 0.2 < np.nanmedian(depth) < 3.0
    rgb, depth = samples["motorcycle_0"]
    assert rgb.shape[:2] == depth.shape and np.isnan(depth).any() and 0.5 < np.nanmedian(depth) < 5.0


def test_nyu_layout_loads_through_the_config_pipelines(demo_root):
    cfg = Config.fromfile(str(CONFIGS / "depth_pe_b16_nyu.py"))
    for loader in ("train_dataloader", "test_dataloader"):
        ds_cfg = cfg[loader].dataset
        ds_cfg.update(data_root=str(demo_root), img_suffix=".png")
        ds_cfg.data_prefix.img_path = ds_cfg.data_prefix.img_path.replace("test", "train")
        ds_cfg.data_prefix.depth_map_path = ds_cfg.data_prefix.depth_map_path.replace("test", "train")
        with DefaultScope.overwrite_default_scope("mmseg"):
            dataset = DATASETS.build(ds_cfg)
            assert len(dataset) == 2
            item = dataset[0]
        depth = item["data_samples"].gt_depth_map.data
        assert depth.shape[-2:] == item["inputs"].shape[-2:]
        # metres (the frames hold 0.4-5 m plus a few far sensor outliers); rotation corners are 0, not 255
        assert (depth > 0).sum() > 0 and (depth == 255).sum() == 0 and depth.max() < 66
        if loader == "test_dataloader":
            mm = cv2.imread(str(demo_root / "annotations" / "train" / "arc2017_0.png"), cv2.IMREAD_UNCHANGED)
            assert np.allclose(depth[0].numpy(), mm.astype(np.float32) * 1e-3)


def _load(img_path, depth_path):
    results = dict(img_path=str(img_path), depth_map_path=str(depth_path), seg_fields=[])
    results = TRANSFORMS.build(dict(type="LoadImageFromFile")).transform(results)
    return TRANSFORMS.build(dict(type="CheckedLoadDepthAnnotation", depth_rescale_factor=1e-3)).transform(results)


def test_bad_depth_files_get_named_errors(demo_root, tmp_path):
    img = demo_root / "images" / "train" / "arc2017_0.png"
    good = demo_root / "annotations" / "train" / "arc2017_0.png"
    loaded = _load(img, good)["gt_depth_map"]
    assert loaded.dtype == np.float32
    assert np.allclose(loaded, cv2.imread(str(good), cv2.IMREAD_UNCHANGED) * 1e-3)
    with pytest.raises(FileNotFoundError, match="annotations/<split>/NAME.png"):
        _load(img, tmp_path / "missing.png")
    as_uint8 = tmp_path / "uint8.png"
    cv2.imwrite(str(as_uint8), np.zeros((120, 160), np.uint8))
    with pytest.raises(DepthDataError, match="uint16"):
        _load(img, as_uint8)
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), np.zeros((120, 160, 3), np.uint16))
    with pytest.raises(DepthDataError, match="single-channel"):
        _load(img, colour)
    other_size = tmp_path / "other.png"
    cv2.imwrite(str(other_size), np.ones((60, 80), np.uint16))
    with pytest.raises(DepthDataError, match="do not belong together"):
        _load(img, other_size)


def test_augmented_batch_through_preprocessor_and_losses(demo_root):
    """The L config (patch 14): augmented 120x160 frames are padded to 126x168 with depth 0, losses are finite."""
    import torch
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(CONFIGS / "depth_pe_l14_nyu.py"))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(data_root=str(demo_root), img_suffix=".png")
    cfg.model.backbone.model_overrides = dict(layers=1)
    cfg.model.decode_head.update(channels=16, head_channels=8)
    with DefaultScope.overwrite_default_scope("mmseg"):
        batch = pseudo_collate([item for item in DATASETS.build(ds_cfg)])
        model = MODELS.build(cfg.model)
    data = model.data_preprocessor(batch, training=True)
    assert data["inputs"].shape[-2:] == (126, 168)
    for sample in data["data_samples"]:
        h, w = sample.img_shape
        depth = sample.gt_depth_map.data
        assert depth.shape[-2:] == (126, 168) and (depth[..., h:, :] == 0).all() and (depth[..., :, w:] == 0).all()
    losses = model.loss(data["inputs"], data["data_samples"])
    assert set(losses) == {"decode.loss_silog", "decode.loss_grad"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
