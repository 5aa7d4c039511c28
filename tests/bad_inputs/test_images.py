"""Every image of the corpus through read_rgb (demo, tracking frames), mmdet's pipeline loader
(CheckedLoadImageFromFile: train/test) and tools/demo.py: a correct RGB image, checked pixel by pixel against an
independent decode, or one named error."""
import os
import re

import numpy as np
import pytest
from _bad_input_corpus import IMAGE_CASES, photo

from pe_dense.cli import run_cli

BAD = sorted(n for n, e in IMAGE_CASES.items() if e != "ok")
GOOD = sorted(n for n, e in IMAGE_CASES.items() if e == "ok")


def pil_rgb(path):
    """The independent reference decode: PIL, orientation not applied."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("name", BAD)
def test_bad_images_raise_one_named_error(corpus, name):
    from pe_dense.data.images import read_rgb

    path = os.path.join(corpus["images"], name)
    with pytest.raises((ValueError, OSError)) as err:
        read_rgb(path)
    assert re.search(IMAGE_CASES[name], str(err.value)) and path in str(err.value)


def test_exif_orientation_6_is_applied(corpus):
    """Orientation 6 = rotate the stored pixels 90 degrees clockwise: the red top-left quadrant of the stored
    48x64 image must appear top-RIGHT of a 64x48 result, and the pixels equal the stored ones rotated."""
    from pe_dense.data.images import read_rgb

    path = os.path.join(corpus["images"], "exif_rotated_6.jpg")
    img = read_rgb(path)
    stored = pil_rgb(path)  # PIL's convert does not apply EXIF orientation
    assert stored.shape == (48, 64, 3) and img.shape == (64, 48, 3)
    np.testing.assert_array_equal(img, np.rot90(stored, k=-1))
    assert (np.abs(img[4:28, 28:44].astype(int) - (255, 0, 0)).max(axis=-1) < 40).all()  # red: top right
    assert (np.abs(img[4:28, 4:20].astype(int) - (255, 0, 0)).max(axis=-1) > 100).mean() > 0.9  # not top left


def test_grayscale_16_bit_rgba_cmyk_and_extreme_sizes(corpus):
    from pe_dense.data.images import read_rgb

    p = lambda n: os.path.join(corpus["images"], n)  # noqa: E731
    ref = photo()
    gray = read_rgb(p("gray.png"))
    np.testing.assert_array_equal(gray, np.repeat(pil_rgb(p("gray.png"))[..., :1], 3, axis=-1))  # replicated
    gray16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    np.testing.assert_array_equal(read_rgb(p("gray16.png")), np.repeat((gray16 >> 8)[..., None], 3, -1))  # high byte
    np.testing.assert_array_equal(read_rgb(p("rgb16.png")), ref)  # v * 257 >> 8 == v
    np.testing.assert_array_equal(read_rgb(p("rgba.png")), ref)  # alpha dropped, colour under it kept
    cmyk = read_rgb(p("cmyk.jpg")).astype(int)
    assert np.abs(cmyk - pil_rgb(p("cmyk.jpg")).astype(int)).mean() < 1.0  # same colours as PIL's CMYK decode
    assert np.abs(cmyk - ref.astype(int)).mean() < 4.0  # and close to the photo (JPEG loss)
    np.testing.assert_array_equal(read_rgb(p("one_pixel.png")), [[[10, 200, 30]]])
    wide = read_rgb(p("wide_10000x10.png"))
    assert wide.shape == (10, 10000, 3) and wide[0, 0, 0] == 0 and wide[9, -1, 2] == 255


@pytest.mark.parametrize("backend", ["cv2", "pillow"])  # pillow: the released DETA test pipeline
@pytest.mark.parametrize("skip_bad", [True, False])
def test_pipeline_loader_on_the_corpus(corpus, skip_bad, backend):
    """Training (skip_bad=True) skips bad files with a warning; testing raises one named error; good files give the
    same pixels as read_rgb (so demos and training see the same image; pillow's JPEG decode may differ by 1-2
    levels from OpenCV's for CMYK)."""
    from pe_dense.data.images import read_rgb
    from pe_dense.engine.data_checks import CheckedLoadImageFromFile

    load = CheckedLoadImageFromFile(skip_bad=skip_bad, imdecode_backend=backend)
    for name in GOOD:
        if name == "wide_10000x10.png":
            continue  # below
        path = os.path.join(corpus["images"], name)
        out = load.transform({"img_path": path})["img"][..., ::-1].astype(int)  # mmcv gives BGR
        ref = read_rgb(path).astype(int)
        assert out.shape == ref.shape, name
        assert np.abs(out - ref).mean() < (1.0 if name == "cmyk.jpg" and backend == "pillow" else 1e-9), name
    for name in BAD:
        path = os.path.join(corpus["images"], name)
        if skip_bad:
            assert load.transform({"img_path": path}) is None
        else:
            with pytest.raises(ValueError, match=f"cannot read image {re.escape(path)}: .*Fix or remove the file"):
                load.transform({"img_path": path})
    wide = os.path.join(corpus["images"], "wide_10000x10.png")
    if skip_bad:
        assert load.transform({"img_path": wide}) is None
    else:
        with pytest.raises(ValueError, match="it is 10000x10, longer than max_aspect_ratio=100 times its short side"):
            load.transform({"img_path": wide})
    unlimited = CheckedLoadImageFromFile(skip_bad=skip_bad, imdecode_backend=backend, max_aspect_ratio=None)
    assert unlimited.transform({"img_path": wide})["img"].shape == (10, 10000, 3)


def test_a_strip_image_breaks_mmdet_resize_which_is_why_it_is_refused(corpus):
    """The reason for max_aspect_ratio: mmdet's keep-ratio Resize to 64 px fails on the 10000x10 image."""
    import cv2
    from mmdet.datasets.transforms import Resize

    from pe_dense.engine.data_checks import CheckedLoadImageFromFile

    wide = os.path.join(corpus["images"], "wide_10000x10.png")
    loaded = CheckedLoadImageFromFile(max_aspect_ratio=None).transform({"img_path": wide})
    with pytest.raises(cv2.error):
        Resize(scale=(64, 64), keep_ratio=True).transform(loaded)


def test_mmcv_pillow_backend_clips_16_bit_gray_and_ours_does_not(corpus):
    """Regression test of the mmcv 2.1.0 defect fixed in CheckedLoadImageFromFile: its pillow path turns every
    16-bit grey value above 255 white."""
    from mmcv.transforms import LoadImageFromFile

    from pe_dense.engine.data_checks import CheckedLoadImageFromFile

    path = os.path.join(corpus["images"], "gray16.png")
    high_byte = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21 >> 8).astype(np.uint8)
    upstream = LoadImageFromFile(imdecode_backend="pillow").transform({"img_path": path})["img"]
    assert (upstream[..., 0] == 255).mean() > 0.9  # the defect: clipped
    ours = CheckedLoadImageFromFile(skip_bad=False, imdecode_backend="pillow").transform({"img_path": path})["img"]
    np.testing.assert_array_equal(ours, np.repeat(high_byte[..., None], 3, -1))


@pytest.mark.parametrize("name", ["exif_rotated_6.jpg", "gray16.png", "rgba.png", "cmyk.jpg", "one_pixel.png",
                                  "wide_10000x10.png"])
def test_demo_tool_draws_every_readable_image(corpus, tool, tmp_path, name):
    args = ["--image", os.path.join(corpus["images"], name), "--size", "32", "--out-dir", str(tmp_path)]
    assert run_cli(tool("demo").main, args + ["--model", "PE-Spatial-T16-512"]) == 0
    assert os.listdir(tmp_path) == ["feature_pca_PE-Spatial-T16-512.png"]


@pytest.mark.parametrize("name", BAD)
def test_demo_tool_on_bad_images(corpus, tool, tmp_path, capsys, name):
    path = os.path.join(corpus["images"], name)
    assert run_cli(tool("demo").main, ["--image", path, "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: image ") and path in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_track_tool_names_a_bad_frame_and_a_bad_mask(corpus, tool, tmp_path, capsys):
    import shutil

    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(os.path.join(corpus["images"], "good.jpg"), frames / "00000.jpg")
    shutil.copy(os.path.join(corpus["images"], "text_renamed.jpg"), frames / "00001.jpg")
    mask = tmp_path / "mask.png"
    from PIL import Image
    Image.fromarray(np.zeros((48, 64), np.uint8), "L").save(mask)
    base = ["--model", "PE-Spatial-T16-512", "--cfg-options", "model.overrides.layers=1", "--no-progress",
            "--out-dir", str(tmp_path / "out")]
    assert run_cli(tool("track").main, ["--video", str(frames), "--first-mask", str(mask), *base]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: image ") and "00001.jpg" in err and len(err.splitlines()) == 1
    bad_mask = os.path.join(corpus["images"], "truncated.png")
    shutil.copy(os.path.join(corpus["images"], "good.jpg"), frames / "00001.jpg")
    assert run_cli(tool("track").main, ["--video", str(frames), "--first-mask", bad_mask, *base]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: mask {bad_mask!r} is not a readable PNG") and "save the mask again" in err
