"""tools/infer.py on a folder and a tiny video: drawings, overlay video and COCO results that load back."""
import json
import os
import sys

import numpy as np
import pytest
from conftest import DETA, MASK_RCNN, REPO, SEG

sys.path.insert(0, os.path.join(REPO, "tools"))


@pytest.fixture(scope="module")
def tiny_video(demo_photos, tmp_path_factory):
    """Three 256x192 frames (the two demo photos and one again), mp4v-encoded with OpenCV."""
    import cv2

    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5, (256, 192))
    for p in demo_photos + demo_photos[:1]:
        writer.write(cv2.resize(cv2.imread(p), (256, 192)))
    writer.release()
    return path


def test_infer_folder_and_video(demo_coco, deta_ckpt, demo_photos, tiny_video, tmp_path):
    import infer
    from pycocotools.coco import COCO
    from torchcodec.decoders import VideoDecoder

    from pe_dense.apis import Detector

    out = str(tmp_path / "out")
    code = infer.main([DETA, deta_ckpt, os.path.join(demo_coco, "images"), tiny_video, "--out-dir", out,
                       "--batch-size", "2", "--no-progress", "--cfg-options", f"data_root={demo_coco}/"])
    assert code == 0
    assert sorted(os.listdir(os.path.join(out, "vis"))) == ["arc2017.png", "voc.png"]
    video = VideoDecoder(os.path.join(out, "clip.mp4"))
    assert len(video) == 3 and (video.metadata.height, video.metadata.width) == (192, 256)

    images = json.load(open(os.path.join(out, "images.json")))["images"]
    assert [im["file_name"] for im in images][:2] == demo_photos and len(images) == 5
    assert images[2]["file_name"] == "clip.mp4#000000" and (images[2]["height"], images[2]["width"]) == (192, 256)
    gt = COCO()
    gt.dataset = dict(images=images, categories=[{"id": i + 1, "name": str(i)} for i in range(12)], annotations=[])
    gt.createIndex()
    dt = gt.loadRes(os.path.join(out, "results.json"))
    det = Detector(DETA, deta_ckpt, cfg_options={"data_root": f"{demo_coco}/"})
    direct = det(demo_photos[1])  # the tool's numbers are the API's
    anns = dt.loadAnns(dt.getAnnIds(imgIds=[2]))
    assert len(anns) == len(direct)
    np.testing.assert_allclose([a["score"] for a in anns], direct.scores, atol=1e-5)


def test_infer_segmentation_writes_label_maps(tmp_path):
    import infer
    from PIL import Image

    from pe_dense.data.demo_seg import build_demo_voc_seg

    root = build_demo_voc_seg(str(tmp_path / "voc"))
    out = str(tmp_path / "out")
    assert infer.main([SEG, "none", os.path.join(root, "img_dir", "*.png"), "--out-dir", out, "--no-progress",
                       "--cfg-options", f"data_root={root}/"]) == 0
    labels = Image.open(os.path.join(out, "pred", "voc.png"))
    assert labels.mode == "P" and labels.size == (500, 375)
    assert os.path.isfile(os.path.join(out, "vis", "voc.png")) and not os.path.exists(os.path.join(out, "results.json"))


@pytest.mark.slow
def test_infer_mask_rcnn_bf16_matches_fp32(demo_coco, mask_rcnn_ckpt, demo_photos, tiny_video, tmp_path):
    """Mask R-CNN end to end through the tool in fp32 and bf16 (photos + video): masks land in the COCO results
    as RLE, and the bf16 run's best boxes match fp32's (same tolerance as tests/apis/test_precision.py)."""
    import infer
    import torch
    from mmdet.structures.bbox import bbox_overlaps
    from pycocotools.coco import COCO

    runs = {}
    for precision in ("fp32", "bf16"):
        out = str(tmp_path / precision)
        assert infer.main([MASK_RCNN, mask_rcnn_ckpt, *demo_photos, tiny_video, "--out-dir", out, "--no-progress",
                           "--precision", precision, "--cfg-options", f"data_root={demo_coco}/"]) == 0
        gt = COCO()
        gt.dataset = dict(images=json.load(open(os.path.join(out, "images.json")))["images"], annotations=[],
                          categories=[{"id": i + 1, "name": str(i)} for i in range(12)])
        gt.createIndex()
        runs[precision] = gt.loadRes(os.path.join(out, "results.json"))
        assert os.path.getsize(os.path.join(out, "clip.mp4")) > 0
    for image_id in range(1, 6):
        a, b = (runs[p].loadAnns(runs[p].getAnnIds(imgIds=[image_id])) for p in ("fp32", "bf16"))
        assert all("segmentation" in x for x in a)
        boxes = [torch.tensor([[x["bbox"][0], x["bbox"][1], x["bbox"][0] + x["bbox"][2], x["bbox"][1] + x["bbox"][3]]
                               for x in anns]) for anns in (a[:20], b)]
        iou = bbox_overlaps(*boxes).numpy()
        same = np.array([[x["category_id"] == y["category_id"] for y in b] for x in a[:20]])
        iou = np.where(same, iou, 0)
        ok = [iou[i].max() >= 0.9 and abs(a[i]["score"] - b[iou[i].argmax()]["score"]) <= 0.01 for i in range(len(iou))]
        assert np.mean(ok) >= 0.9, (image_id, iou.max(1))
