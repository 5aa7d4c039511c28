"""Frame sources (torchcodec, image folders), label PNGs, overlays and input checks."""
import numpy as np
import pytest
import torch
from PIL import Image

from pe_dense.tracking.features import preprocess_frames
from pe_dense.tracking.pipeline import check_first_mask
from pe_dense.tracking.resize import protocol_frame_size
from pe_dense.tracking.video import (
    ImageFolderFrames,
    OverlayWriter,
    VideoFileFrames,
    davis_palette,
    open_frames,
    overlay_labels,
    read_label_png,
    write_label_png,
)


def synthetic_clip(num_frames=10, size=(64, 96)):
    """Smooth colour gradients with a bright square moving right: easy for a lossy codec to keep."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(num_frames):
        f = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 40 + 10 * t)], -1).astype(np.uint8)
        f[20:40, 10 + 4 * t:30 + 4 * t] = (250, 250, 30)
        frames.append(f)
    return np.stack(frames)


def test_mp4_made_here_decodes_with_torchcodec(tmp_path):
    from torchcodec.encoders import VideoEncoder

    clip = synthetic_clip()
    path = tmp_path / "clip.mp4"
    VideoEncoder(torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous(), frame_rate=12).to_file(str(path))
    source = open_frames(str(path))
    assert isinstance(source, VideoFileFrames)
    assert len(source) == len(clip) and source.size == clip.shape[1:3]
    assert source.fps == pytest.approx(12, rel=0.01)
    decoded = np.concatenate(list(source.iter_batches(3)))  # batches of 3, 3, 3, 1
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8
    err = np.abs(decoded.astype(int) - clip.astype(int))
    assert err.mean() < 4 and np.percentile(err, 99) < 40  # lossy h264 + yuv420 chroma subsampling
    moved = decoded[5, 30, 34]  # the square's centre at frame 5 is still the square's colour
    assert moved[0] > 200 and moved[1] > 200 and moved[2] < 90


def test_undecodable_and_missing_videos_name_the_problem(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"definitely not a video" * 50)
    with pytest.raises(ValueError, match="torchcodec cannot decode.*re-encod"):
        VideoFileFrames(str(bad))
    with pytest.raises(FileNotFoundError, match="video not found"):
        VideoFileFrames(str(tmp_path / "nope.mp4"))


def test_image_folder_frames_and_size_check(tmp_path):
    import cv2

    clip = synthetic_clip(4)
    for t, f in enumerate(clip):
        cv2.imwrite(str(tmp_path / f"{t:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    source = ImageFolderFrames.from_folder(str(tmp_path))
    assert source.names == ["00000", "00001", "00002", "00003"]
    assert np.array_equal(np.concatenate(list(source.iter_batches(3))), clip)  # PNG: lossless, RGB order kept
    cv2.imwrite(str(tmp_path / "00004.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="one size"):
        list(ImageFolderFrames.from_folder(str(tmp_path)).iter_batches(8))


def test_palette_png_round_trip(tmp_path):
    labels = np.zeros((30, 40), dtype=np.int64)
    labels[5:15, 5:15], labels[20:25, 30:38] = 1, 7
    path = str(tmp_path / "seq" / "00003.png")
    write_label_png(path, labels)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert tuple(im.getpalette()[3:6]) == (128, 0, 0)  # DAVIS colour of object 1
    back, palette = read_label_png(path)
    assert np.array_equal(back, labels)
    assert np.array_equal(palette, davis_palette())
    with pytest.raises(ValueError, match="0..255"):
        write_label_png(path, labels + 300)


def test_davis_palette_colours():
    pal = davis_palette()
    assert pal.shape == (256, 3)
    assert [tuple(pal[i]) for i in range(4)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert tuple(pal[255]) == (224, 224, 192)  # the colour DAVIS uses for void


def test_grey_and_colour_masks(tmp_path):
    grey = np.zeros((8, 8), np.uint8)
    grey[2:4, 2:4] = 2
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    assert np.array_equal(read_label_png(str(tmp_path / "grey.png"))[0], grey)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[0:2, 0:2] = (0, 128, 0)
    colour[5:7, 5:7] = (128, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    labels, _ = read_label_png(str(tmp_path / "colour.png"))
    assert labels[0, 0] != labels[5, 5] and labels[3, 3] == 0 and set(np.unique(labels)) == {0, 1, 2}
    with pytest.raises(FileNotFoundError):
        read_label_png(str(tmp_path / "missing.png"))


def test_first_mask_must_match_frame_size():
    with pytest.raises(ValueError, match=r"100x50 but the video frames are 96x64.*nearest"):
        check_first_mask(np.zeros((50, 100), np.int64), (64, 96), "mask.png", 255)
    fixed = check_first_mask(np.full((64, 96), 255, np.int64), (64, 96), "mask.png", 255)
    assert (fixed == 0).all()  # void is no object


def test_overlay_video_is_written_and_decodable(tmp_path):
    from torchcodec.decoders import VideoDecoder

    clip = synthetic_clip(5)
    labels = np.zeros(clip.shape[1:3], np.int64)
    labels[10:30, 10:40] = 1
    writer = OverlayWriter(str(tmp_path / "overlays" / "clip"), fps=10, mode="mp4")
    for f in clip:
        writer.write(overlay_labels(f, labels, davis_palette(), 0.5))
    writer.close()
    assert writer.path.endswith(".mp4")
    assert len(VideoDecoder(writer.path)) == 5
    blended = overlay_labels(clip[0], labels, davis_palette(), 0.5)
    assert np.array_equal(blended[50:], clip[0][50:])  # background untouched
    assert not np.array_equal(blended[15:25, 15:35], clip[0][15:25, 15:35])
    png = OverlayWriter(str(tmp_path / "pngs"), fps=10, mode="png")
    png.write(blended)
    png.close()
    assert (tmp_path / "pngs" / "00000.png").exists()


def test_protocol_frame_size():
    assert protocol_frame_size(480, 854, patch_size=16) == (480, 832)  # DAVIS 480p
    assert protocol_frame_size(854, 480, patch_size=16) == (832, 480)  # portrait
    assert protocol_frame_size(1080, 1920, patch_size=16) == (480, 832)  # 853.3 -> 832
    assert protocol_frame_size(480, 910, patch_size=16) == (480, 896)
    assert protocol_frame_size(480, 854, patch_size=14) == (476, 826)  # patch 14: rounded to patch multiples
    assert protocol_frame_size(70, 100, short_side=None, patch_size=16) == (64, 96)
    with pytest.raises(ValueError, match="smaller than one"):
        protocol_frame_size(100, 100, short_side=8, long_side_multiple=8, patch_size=16)


def test_preprocess_matches_protocol_arithmetic():
    import cv2

    frame = synthetic_clip(1, (50, 90))[0]
    x = preprocess_frames(frame[None], (32, 48))
    assert x.shape == (1, 3, 32, 48) and x.dtype == torch.float32
    manual = (cv2.resize(frame, (48, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0 - 0.5) / 0.5
    assert torch.equal(x[0], torch.from_numpy(manual).permute(2, 0, 1))
    with pytest.raises(ValueError, match="uint8 RGB"):
        preprocess_frames(frame[None].astype(np.float32), (32, 48))
