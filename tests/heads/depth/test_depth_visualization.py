"""Depth pictures and the colour augmentation: the hook writes photo | prediction | ground truth under the
--show-dir contract, invalid depth is black, one colour scale for both maps; DepthColorAug by hand."""
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from pe_dense.heads.depth import DepthColorAug, DepthVisualizationHook, colorize_depth


def test_colorize_depth_marks_invalid_black_and_orders_depths():
    depth = np.array([[0.0, np.nan, np.inf, 1.0, 2.0, 4.0]], dtype=np.float32)
    img = colorize_depth(depth, 0.0, 4.0)
    assert img.shape == (1, 6, 3) and img.dtype == np.uint8
    assert (img[0, :3] == 0).all() and (img[0, 3:].sum(-1) > 0).all()
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_TURBO)[0]
    assert (img[0, 5] == lut[255]).all() and (img[0, 3] == lut[63]).all()  # 1/4 of the range -> 63


def test_hook_writes_side_by_side_panels_to_test_out_dir(tmp_path):
    photo = np.full((6, 8, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "frame_1.png"), photo)
    sample = SegDataSample(metainfo=dict(img_path=str(tmp_path / "frame_1.png")))
    gt = torch.full((1, 6, 8), 2.0)
    gt[0, 0, 0] = 0.0  # no measurement
    sample.gt_depth_map = PixelData(data=gt)
    sample.pred_depth_map = PixelData(data=torch.full((1, 6, 8), 2.0))
    out_dir = tmp_path / "show"
    runner = SimpleNamespace(work_dir=str(tmp_path), timestamp="t")
    DepthVisualizationHook(draw=False, test_out_dir=str(out_dir)).after_test_iter(runner, 0, {}, [sample])
    assert not out_dir.exists()
    hook = DepthVisualizationHook(draw=True, test_out_dir=str(out_dir), score_thr=0.3)  # what tools/test.py passes
    hook.after_test_iter(runner, 0, {}, [sample])
    panel = cv2.imread(str(out_dir / "frame_1_depth.png"))
    assert panel.shape == (6, 24, 3)
    assert (panel[:, :8] == 200).all()
    assert (panel[:, 8:16] == panel[:, 16:24])[1:].all()  # same depth, same colour scale
    assert (panel[0, 16] == 0).all() and panel[0, 8].sum() > 0


def test_depth_color_aug_by_hand():
    img = np.array([[[10, 100, 200]]], dtype=np.uint8)
    aug = DepthColorAug(prob=1.0, gamma_range=(1.0, 1.0), brightness_range=(1.5, 1.5), color_range=(1.0, 1.0))
    out = aug.transform(dict(img=img.copy(), gt_depth_map=np.ones((1, 1), np.float32)))
    assert out["img"].tolist() == [[[15, 150, 255]]]  # x 1.5, clipped at 255
    assert out["gt_depth_map"].tolist() == [[1.0]]
    gamma = DepthColorAug(prob=1.0, gamma_range=(2.0, 2.0), brightness_range=(1.0, 1.0), color_range=(1.0, 1.0))
    assert gamma.transform(dict(img=img.copy()))["img"].tolist() == [[[0, 39, 157]]]  # 255 * (x / 255) ** 2
    assert DepthColorAug(prob=0.0).transform(dict(img=img.copy()))["img"].tolist() == img.tolist()
