"""pe_dense.deploy: numpy preprocessing equal to PyTorch's, box/feature mapping back to the original image,
drawing, and the whole runner working in a process where torch cannot be imported."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from _export_tiny import SIZE, reference_extractor
from onnx import TensorProto, helper

from pe_dense.data.images import preprocess
from pe_dense.deploy import DeployedModel, Transform, boxes_to_original, draw_detections, prepare, resize_bilinear

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.parametrize("size", [(64, 96), (600, 701), (37, 500)])
def test_resize_bilinear_equals_torch_interpolate(size):
    img = skimage.data.astronaut().astype(np.float32) / 255  # 512x512, shrunk, enlarged, mixed
    ref = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None], size=size, mode="bilinear",
                        align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(resize_bilinear(img, size), ref, atol=2e-6, rtol=0)


def test_prepare_equals_the_training_preprocess():
    img = skimage.data.coffee()  # 400x600
    meta = reference_metadata()
    x, t = prepare(img, meta)
    np.testing.assert_allclose(x, preprocess(img, SIZE)[0].numpy(), atol=1e-5, rtol=0)
    assert t == Transform((400, 600), SIZE, (SIZE[0] / 400, SIZE[1] / 600))


def reference_metadata():
    from pe_dense.export.feature_extractor import feature_metadata
    return feature_metadata(reference_extractor(), "PE-Spatial-T16-512", None)


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    meta = dict(reference_metadata(), input_size=[64, 64], resize={"mode": "letterbox", "pad_value": 0.0})
    img = skimage.data.coffee()  # 400x600 -> scale 64/600 -> 43x64 (int(42.67 + 0.5))
    x, t = prepare(img, meta)
    assert t.scale_yx == (43 / 400, 64 / 600)
    expected = (resize_bilinear(img.astype(np.float32) / 255, (43, 64)) - 0.5) / 0.5
    np.testing.assert_allclose(x[:, :43].transpose(1, 2, 0), expected, atol=1e-6)
    assert np.all(x[:, 43:] == -1.0)  # pad value 0 after scaling, normalised


def test_boxes_back_to_original_pixels_hand_cases():
    stretch = Transform((400, 600), (64, 96), (64 / 400, 96 / 600))
    np.testing.assert_allclose(boxes_to_original([[16, 8, 48, 32]], stretch), [[100, 50, 300, 200]], rtol=1e-6)
    letterbox = Transform((400, 600), (64, 64), (43 / 400, 64 / 600))
    np.testing.assert_allclose(boxes_to_original([[32, 21.5, 64, 60]], letterbox),
                               [[300, 200, 600, 400]], rtol=1e-6)  # y 60 lies in the padding: clipped to 400


def test_draw_outlines_only_real_slots():
    img = np.zeros((10, 12, 3), np.uint8)
    out = draw_detections(img, [[2, 2, 6, 7], [0, 0, 11, 9]], [0.9, 0.0], [3, -1], thickness=1)
    drawn = out.any(-1)
    expected = np.zeros((10, 12), bool)
    expected[2, 2:7] = expected[7, 2:7] = expected[2:8, 2] = expected[2:8, 6] = True
    np.testing.assert_array_equal(drawn, expected)
    assert not img.any()  # input untouched


def test_runner_trims_detections_and_maps_boxes(tmp_path):
    """A hand-built detector-shaped graph (constant outputs) with its metadata in a JSON file beside it."""
    def const(name, array, dtype):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, array.shape,
                                                                                  array.flatten().tolist()))
    boxes = np.array([[[16, 8, 48, 32], [0, 0, 0, 0]]], np.float32)
    nodes = [const("boxes", boxes, TensorProto.FLOAT), const("scores", np.array([[0.8, 0.0]]), TensorProto.FLOAT),
             const("labels", np.array([[2, -1]]), TensorProto.INT64),
             const("num_dets", np.array([1]), TensorProto.INT64)]
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 2, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 2]),
            helper.make_tensor_value_info("num_dets", TensorProto.INT64, [1])]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            [1, 3, 64, 96])], outs)
    path = str(tmp_path / "det.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with open(tmp_path / "det.json", "w") as f:
        json.dump(dict(reference_metadata(), batch=1), f)
    model = DeployedModel(path)
    (res,) = model([skimage.data.coffee()])
    np.testing.assert_allclose(res["boxes"], [[100, 50, 300, 200]], rtol=1e-6)
    assert res["labels"].tolist() == [2] and res["scores"].tolist() == pytest.approx([0.8])
    with pytest.raises(ValueError, match="exported for batch 1, got 2"):
        model([skimage.data.coffee()] * 2)


CHILD = textwrap.dedent("""
    import sys, importlib.abc
    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "mmengine", "mmcv", "mmdet", "mmseg", "cv2"):
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch  # noqa: F401
        sys.exit("torch import was not blocked")
    except ImportError:
        pass
    import numpy as np
    from pe_dense.deploy import DeployedModel, draw_detections, paste_masks
    assert paste_masks(np.ones((1, 28, 28)), [[0, 0, 4, 4]], (8, 8))[0, :4, :4].all()
    model = DeployedModel(sys.argv[1], threads=1)
    images = list(np.load(sys.argv[2]).values())
    results = model(images)
    name = model.meta["output_names"][-1]
    on_image = model.features_on_image(results[0], name)
    assert on_image.shape[1:] == images[0].shape[:2], on_image.shape
    draw_detections(images[0], [[1, 1, 5, 5]], [1.0], [0])
    assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "mmengine", "cv2")]
    np.savez(sys.argv[3], *[r[name] for r in results])
""")


def test_runner_works_without_torch_and_matches_pytorch(onnx_fp32, tmp_path):
    images = [skimage.data.astronaut(), skimage.data.coffee()]  # 512x512 and 400x600 originals
    np.savez(tmp_path / "images.npz", *images)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, onnx_fp32, str(tmp_path / "images.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    x = torch.cat([preprocess(img, SIZE) for img in images])
    with torch.no_grad():
        ref = reference_extractor()(x)[-1].numpy()
    for b in range(2):
        np.testing.assert_allclose(got[f"arr_{b}"], ref[b], rtol=1e-3, atol=1e-4)


def test_paste_masks_equals_mmdet():
    """Against mmdet's _do_paste_mask (whole image): boxes inside, overhanging the border and sub-pixel."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask

    from pe_dense.deploy import paste_masks

    torch.manual_seed(0)
    masks = torch.rand(4, 28, 28)
    boxes = torch.tensor([[10.3, 5.2, 60.7, 40.1], [-8.0, 30.0, 20.0, 70.5], [70.0, 2.0, 95.5, 64.0],
                          [40.0, 40.0, 40.6, 40.4]])
    ref, _ = _do_paste_mask(masks[:, None], boxes, 64, 96, skip_empty=False)
    probs = paste_masks(masks.numpy(), boxes.numpy(), (64, 96), threshold=None)
    np.testing.assert_allclose(probs, ref.numpy(), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(paste_masks(masks.numpy(), boxes.numpy(), (64, 96)), ref.numpy() >= 0.5)
