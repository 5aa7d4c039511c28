"""Segmenter and DepthEstimator equal the models' own test_step on mmseg's dataset pipeline, at original size."""
import os

import numpy as np
import pytest
import torch
from conftest import DEPTH, SEG


def dataset_predictions(predictor):
    """Predictions of the predictor's model through the config's test dataloader (mmseg's dataset + pipeline)."""
    from mmengine.runner import Runner

    out = {}
    for batch in Runner.build_dataloader(predictor.cfg.test_dataloader):
        with torch.no_grad():
            for sample in predictor.model.test_step(batch):
                out[os.path.basename(sample.img_path)] = sample
    return out


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    from pe_dense.data.demo_seg import build_demo_voc_seg

    return build_demo_voc_seg(str(tmp_path_factory.mktemp("voc")))


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    from pe_dense.data.demo_depth import build_demo_depth

    return str(build_demo_depth(tmp_path_factory.mktemp("nyu"), size=(192, 256)))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_segmenter_equals_test_step(voc, precision):
    from pe_dense.apis import Segmenter
    from pe_dense.data.demo_seg import voc_class_names

    seg = Segmenter(SEG, precision=precision, cfg_options={"data_root": voc + "/"})
    path = os.path.join(voc, "img_dir", "voc.png")
    res = seg(path)
    ref = dataset_predictions(seg)["voc.png"].pred_sem_seg.data[0].numpy()
    assert res.labels.shape == (375, 500) == ref.shape  # the photo's size (the model pads to 16)
    np.testing.assert_array_equal(res.labels, ref)
    assert len(np.unique(res.labels)) > 1
    assert tuple(seg.class_names) == tuple(voc_class_names())  # VOC names from the config, not Cityscapes'
    overlay = res.draw()
    assert overlay.shape == (375, 500, 3) and (overlay != res.draw(alpha=0.0)).any()
    if precision == "bf16":
        assert all(p.dtype == torch.float32 for m in seg.model.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for p in m.parameters())


def test_depth_equals_test_step(nyu, tmp_path):
    from pe_dense.apis import DepthEstimator

    est = DepthEstimator(DEPTH, cfg_options={"data_root": nyu + "/"})
    refs = dataset_predictions(est)
    folder = os.path.join(nyu, "images", "test")
    results = est(folder, batch_size=2)
    assert len(results) == len(refs) == 2
    for res in results:
        ref = refs[os.path.basename(res.path)].pred_depth_map.data[0].numpy()
        assert res.depth.shape == ref.shape == (192, 256)
        np.testing.assert_allclose(res.depth, ref, rtol=1e-5, atol=1e-5)
        assert 0 < res.depth.min() and res.depth.max() <= 10.0  # metres, the head's (0, max_depth] range
    assert results[0].max_depth == 10.0
    picture = results[0].draw()
    assert picture.shape == (192, 512, 3)
    assert os.path.isfile(results[0].save(str(tmp_path / "depth.png")))
