"""Tracker: first mask in, masks per frame out, equal to the label-propagation protocol run by hand."""
import os

import numpy as np
import pytest
import torch

OPTIONS = {"model.overrides": dict(layers=2), "data.short_side": 128, "data.long_side_multiple": 16}


@pytest.fixture(scope="module")
def clip():
    import skimage.data

    photo = skimage.data.astronaut()[::4, ::4]  # 128 x 128
    frames = np.stack([np.roll(photo, 4 * t, axis=1) for t in range(4)])
    first = np.zeros(photo.shape[:2], np.int64)
    first[20:70, 30:80] = 1
    first[90:120, 10:40] = 2
    return frames, first


def test_tracker_equals_protocol(clip, tmp_path):
    from pe_dense.apis import Tracker
    from pe_dense.tracking import propagate
    from pe_dense.tracking.features import preprocess_frames

    frames, first = clip
    torch.manual_seed(0)
    tracker = Tracker("PE-Spatial-T16-512", cfg_options=OPTIONS, batch_size=3)
    track = tracker(frames, first)
    assert len(track) == 4 and track.masks[0].shape == (128, 128) and track.masks[0].dtype == np.uint8
    np.testing.assert_array_equal(track.masks[0], first)
    with torch.no_grad():  # the protocol by hand: features of every frame, then propagate
        feats = tracker.model.forward_intermediates(preprocess_frames(frames, (128, 128)), indices=[-1],
                                                    output_fmt="NCHW")[0]
    cfg = tracker.cfg.propagation
    ref = propagate(feats, torch.from_numpy(first), n_last_frames=cfg.n_last_frames, radius=cfg.radius,
                    topk=cfg.topk, temperature=cfg.temperature)
    for t in range(1, 4):
        np.testing.assert_array_equal(track.masks[t], np.asarray(ref[t]))
    overlay = track.save(str(tmp_path / "out"), frames=frames, overlay="png")
    assert sorted(os.listdir(tmp_path / "out"))[:4] == [f"{i:05d}.png" for i in range(4)]
    assert len(os.listdir(overlay)) == 4


def test_tracker_bf16_and_video_file(clip, tmp_path):
    import cv2

    from pe_dense.apis import Tracker

    frames, first = clip
    path = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 8, (128, 128))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    tracker = Tracker("PE-Spatial-T16-512", cfg_options=OPTIONS, precision="bf16")
    assert tracker.model.blocks[0].attn.in_proj_weight.dtype == torch.bfloat16
    track = tracker(path, first)
    assert len(track) == 4 and track.fps == pytest.approx(8.0)
    np.testing.assert_array_equal(track.masks[0], first)
    with pytest.raises(ValueError, match="frames"):
        tracker(frames, first[:64])
