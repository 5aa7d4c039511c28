"""Fixtures for the tracking tests: an oracle moving-objects video and a tiny DAVIS folder."""
from typing import Tuple

import numpy as np
import pytest
import torch
from tracking_synthetic import oracle_features, token_boxes_video


@pytest.fixture(autouse=True)
def single_torch_thread():
    """These tests run tiny tensors: on a shared 2-core machine, OpenMP threads waiting for each other cost
    10x more than the work, so run them on one thread and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def oracle_video():
    """Three 3x3-token objects moving one token per frame in different directions over 12 frames."""
    T, grid, patch = 12, (14, 18), 8
    boxes = {
        1: [(1, 1 + t, 3, 3) for t in range(T)],  # right
        2: [(10 - (t // 2), 2, 3, 3) for t in range(T)],  # up, every other frame
        3: [(3 + (t // 3), 14 - t, 3, 3) for t in range(T)],  # left and down
    }
    masks = token_boxes_video(T, grid, patch, boxes)
    return masks, oracle_features(masks, patch, 4), patch


def _random_walk_crops(image: np.ndarray, num_frames: int, size: Tuple[int, int], step: Tuple[int, int],
                       origin: Tuple[int, int]):
    h, w = size
    crops = []
    for t in range(num_frames):
        r, c = origin[0] + step[0] * t, origin[1] + step[1] * t
        crops.append(np.ascontiguousarray(image[r:r + h, c:c + w]))
    return crops


@pytest.fixture
def tiny_davis(tmp_path):
    """A DAVIS-2017 layout with two 6-frame sequences panned over skimage's astronaut and coffee images.

    Objects are fixed rectangles of the source image, so they move in the frames opposite to the pan.
    Returns (root, {sequence: list of GT label maps}).
    """
    import cv2
    from skimage import data as skdata

    from pe_dense.tracking.video import write_label_png

    root = tmp_path / "DAVIS"
    sources = {"astro": (skdata.astronaut(), (5, 4), (60, 80), {1: (130, 160, 70, 60), 2: (150, 290, 50, 60)}),
               "coffee": (skdata.coffee(), (0, 6), (40, 60), {1: (100, 150, 90, 110)})}
    size = (150, 260)
    gts = {}
    for seq, (image, step, origin, objects) in sources.items():
        crops = _random_walk_crops(image, 6, size, step, origin)
        (root / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        (root / "Annotations" / "480p" / seq).mkdir(parents=True)
        seq_gts = []
        for t, crop in enumerate(crops):
            cv2.imwrite(str(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg"),
                        cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            gt = np.zeros(size, dtype=np.int64)
            for label, (r, c, bh, bw) in objects.items():  # source-image rectangle -> frame coordinates
                r0, c0 = r - origin[0] - step[0] * t, c - origin[1] - step[1] * t
                gt[max(r0, 0):max(r0 + bh, 0), max(c0, 0):max(c0 + bw, 0)] = label
            write_label_png(str(root / "Annotations" / "480p" / seq / f"{t:05d}.png"), gt)
            seq_gts.append(gt)
        gts[seq] = seq_gts
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("astro\ncoffee\n")
    return root, gts
