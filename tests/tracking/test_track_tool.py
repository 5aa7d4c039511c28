"""End to end: tools/track.py on a tiny DAVIS folder and on an mp4, with a random-weight 2-block T model."""
import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tracking_synthetic import oracle_features, token_boxes_video

from pe_dense.tracking import davis_jf
from pe_dense.tracking.features import FeatureExtractor
from pe_dense.tracking.pipeline import track_frames
from pe_dense.tracking.video import ImageFolderFrames, read_label_png, write_label_png

TRACK = Path(__file__).resolve().parents[2] / "tools" / "track.py"
SMALL = ["--model", "PE-Spatial-T16-512", "--cfg-options", "model.overrides.layers=2", "data.short_side=224",
         "data.long_side_multiple=32"]


def load_track_tool():
    spec = importlib.util.spec_from_file_location("track_tool", TRACK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_davis_split_end_to_end(tiny_davis, tmp_path):
    root, gts = tiny_davis
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(TRACK), "--davis", str(root), "--out-dir", str(out),
                           "--batch-size", "4", "--no-progress", *SMALL],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny tensors: see conftest
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOM weights" in proc.stderr
    assert "J&F" in proc.stdout and "astro" in proc.stdout and "coffee" in proc.stdout

    preds = {}
    for seq, seq_gts in gts.items():
        pngs = sorted((out / seq).glob("*.png"))
        assert [p.stem for p in pngs] == [f"{t:05d}" for t in range(6)]
        with Image.open(pngs[1]) as im:
            assert im.mode == "P" and im.size == (260, 150)  # original frame size, DAVIS palette PNG
        preds[seq] = [read_label_png(str(p))[0] for p in pngs]
        assert np.array_equal(preds[seq][0], seq_gts[0])  # frame 0 is the given mask
        assert set(np.unique(np.concatenate(preds[seq]))) <= set(np.unique(seq_gts[0]))
        from torchcodec.decoders import VideoDecoder
        overlay = VideoDecoder(str(out / "overlays" / f"{seq}.mp4"))
        assert len(overlay) == 6 and (overlay.metadata.height, overlay.metadata.width) == (150, 260)

    # the printed/CSV numbers are those of the metric on the PNGs written to disk
    expected = davis_jf(gts, preds)
    with open(out / "global_results.csv") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["J&F-Mean"]) == pytest.approx(expected.jf, abs=1e-3)
    with open(out / "per-sequence_results.csv") as fh:
        rows = {r["Sequence"]: r for r in csv.DictReader(fh)}
    assert rows.keys() == {"astro", "coffee"} and rows["astro"]["Objects"] == "2"
    assert (out / "tracking_config.py").exists()


def test_video_file_end_to_end(tiny_davis, tmp_path):
    """An mp4 made here, its first mask and per-frame GT PNGs; in-process call of the tool's main()."""
    from torchcodec.encoders import VideoEncoder

    root, gts = tiny_davis
    frames = ImageFolderFrames.from_folder(str(root / "JPEGImages" / "480p" / "astro"))
    clip = np.concatenate(list(frames.iter_batches(6)))
    video = tmp_path / "astro clip.mp4"  # a space in the name on purpose
    VideoEncoder(torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous(), frame_rate=24).to_file(str(video))
    write_label_png(str(tmp_path / "first.png"), gts["astro"][0])
    for t, gt in enumerate(gts["astro"]):
        write_label_png(str(tmp_path / "gt" / f"{t:05d}.png"), gt)
    out = tmp_path / "out"
    tool = load_track_tool()
    code = tool.main(["--video", str(video), "--first-mask", str(tmp_path / "first.png"), "--gt-dir",
                      str(tmp_path / "gt"), "--out-dir", str(out), "--no-progress", *SMALL, "output.overlay=png"])
    assert code == 0
    assert len(list((out / "astro clip").glob("*.png"))) == 6
    assert len(list((out / "overlays" / "astro clip").glob("*.png"))) == 6
    assert (out / "per-object_results.csv").exists()

    bad_mask = tmp_path / "small.png"
    write_label_png(str(bad_mask), gts["astro"][0][:100, :200])
    with pytest.raises(ValueError, match="200x100 but the video frames are 260x150"):
        tool.main(["--video", str(video), "--first-mask", str(bad_mask), "--out-dir", str(out), "--no-progress",
                   *SMALL])


class CountingOracleModel(torch.nn.Module):
    """Stands in for PE: 'features' are one-hot colours of the frame's red channel (the label painted in),
    and every forward call is recorded."""

    patch_size = 8

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward_intermediates(self, x, indices, output_fmt, norm):
        self.calls.append(x.shape[0])
        red = ((x[:, 0] * 0.5 + 0.5) * 255).round().long() // 60  # label * 60 painted into the red channel
        centre = red[:, self.patch_size // 2::self.patch_size, self.patch_size // 2::self.patch_size]
        return [torch.nn.functional.one_hot(centre, 4).permute(0, 3, 1, 2).float()]


def test_features_once_per_frame_in_batches_and_streamed(tmp_path):
    import cv2

    T, grid, patch = 7, (6, 10), 8
    masks = token_boxes_video(T, grid, patch, {1: [(1, 1 + t, 2, 2) for t in range(T)],
                                               2: [(3, 7 - t // 2, 2, 2) for t in range(T)]})
    for t, m in enumerate(masks):
        rgb = np.stack([m * 60, np.full_like(m, 90), np.full_like(m, 30)], -1).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"{t:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    source = ImageFolderFrames.from_folder(str(tmp_path))
    model = CountingOracleModel()
    extractor = FeatureExtractor(model, batch_size=3)
    cfg = dict(data=dict(short_side=None, long_side_multiple=64),
               propagation=dict(n_last_frames=7, radius=12, topk=5, temperature=0.1))
    seen = []
    preds = track_frames(source, masks[0], extractor, cfg, on_frame=lambda i, f, m: seen.append(i))
    assert model.calls == [3, 3, 1]  # every frame once, in batches
    assert seen == list(range(T))
    feats = oracle_features(masks, patch, 4)
    from pe_dense.tracking import propagate
    direct = propagate(feats, masks[0], patch_size=patch)
    for p, d in zip(preds, direct, strict=True):
        assert np.array_equal(p, d.numpy())


def test_checkpoint_is_loaded_without_warning(tmp_path, caplog):
    import logging

    from pe_dense.tracking.features import build_model

    torch.manual_seed(0)
    saved = build_model("PE-Spatial-T16-512", overrides=dict(layers=2))
    path = tmp_path / "PE-Spatial-T16-512.pt"
    torch.save(saved.state_dict(), path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pe_dense.tracking.features"):
        torch.manual_seed(1)
        loaded = build_model("PE-Spatial-T16-512", checkpoint=str(path), overrides=dict(layers=2))
    assert "RANDOM" not in caplog.text
    assert torch.equal(loaded.conv1.weight, saved.conv1.weight)
