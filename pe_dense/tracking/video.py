"""Reading frames (DAVIS folders, video files via torchcodec) and label PNGs; writing palette PNGs and overlays.

Frames are handed out as (B, H, W, 3) uint8 RGB batches so that feature extraction can be batched and long
videos never have to sit in memory whole.
"""
from __future__ import annotations

import glob
import logging
import os
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm")
DEFAULT_FPS = 24.0  # DAVIS sequences are 24 fps


def davis_palette() -> np.ndarray:
    """(256, 3) uint8 palette of DAVIS / PASCAL VOC: label bits spread over the high bits of R, G, B."""
    ids = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for level in range(8):
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * level + channel)) & 1) << (7 - level)
    return palette.astype(np.uint8)


# ----------------------------------------------------------------------------------------------- label PNGs
def read_label_png(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(H, W) int64 labels and the (256, 3) palette (None when the PNG has none) of an annotation PNG.

    Palette ('P') and grey-level PNGs store labels directly. Colour PNGs are mapped colour -> label with black as
    background and the other colours in sorted order (logged), since a colour image carries no label order.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mask PNG not found: {path}")
    with Image.open(path) as im:
        im.load()
        mode, palette = im.mode, im.getpalette()
        if mode == "P":
            labels = np.asarray(im).astype(np.int64)
        elif mode in ("L", "I", "I;16", "1"):
            labels = np.asarray(im).astype(np.int64)
        elif mode in ("RGB", "RGBA", "LA"):
            rgb = np.asarray(im.convert("RGB"))
            colours, labels = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
            labels = labels.reshape(rgb.shape[:2]).astype(np.int64)
            if (colours[0] != 0).any():  # no black: every colour is an object, shift them past background
                labels += 1
            logger.warning("%s is a colour mask; labels assigned by sorted colour: %s", path,
                           {tuple(int(v) for v in c): i + int((colours[0] != 0).any())
                            for i, c in enumerate(colours)})
            palette = None
        else:
            raise ValueError(f"{path}: unsupported PNG mode {mode!r}; save the mask as a palette ('P') or "
                             "grey-level ('L') PNG whose pixel values are the object labels")
    pal = None if palette is None else np.asarray(palette, dtype=np.uint8)[: 256 * 3].reshape(-1, 3)
    if pal is not None and len(pal) < 256:
        pal = np.concatenate([pal, davis_palette()[len(pal):]])
    return labels, pal


def write_label_png(path: str, labels: np.ndarray, palette: Optional[np.ndarray] = None) -> None:
    """Save labels as an indexed (palette) PNG, the DAVIS result format."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {labels.shape}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError(f"labels must be in 0..255 for a palette PNG, got {labels.min()}..{labels.max()}")
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette((davis_palette() if palette is None else palette).astype(np.uint8).ravel().tolist())
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    im.save(path, format="PNG")


# ----------------------------------------------------------------------------------------------- frames
class ImageFolderFrames:
    """Frames stored as image files (a DAVIS ``JPEGImages/480p/SEQ`` folder), decoded with OpenCV like the
    reference protocol."""

    def __init__(self, paths: Sequence[str], fps: float = DEFAULT_FPS):
        if not paths:
            raise FileNotFoundError("no frames given")
        self.paths = list(paths)
        self.names = [os.path.splitext(os.path.basename(p))[0] for p in self.paths]
        self.fps = fps
        first = self._read(self.paths[0])
        self.size = first.shape[:2]

    @classmethod
    def from_folder(cls, folder: str, extensions: Sequence[str] = (".jpg", ".jpeg", ".png"), **kw):
        paths = sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(tuple(extensions)))
        if not paths:
            raise FileNotFoundError(f"no {'/'.join(extensions)} frames in {folder}")
        return cls(paths, **kw)

    @staticmethod
    def _read(path: str) -> np.ndarray:
        from pe_dense.data.images import read_rgb

        return read_rgb(path)  # OpenCV IMREAD_COLOR as before; bad files raise one named error

    def __len__(self) -> int:
        return len(self.paths)

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.paths), batch_size):
            batch = [self._read(p) for p in self.paths[start:start + batch_size]]
            for p, f in zip(self.paths[start:], batch):
                if f.shape[:2] != tuple(self.size):
                    raise ValueError(f"{p} is {f.shape[1]}x{f.shape[0]} but the first frame is "
                                     f"{self.size[1]}x{self.size[0]}: all frames of a video must have one size")
            yield np.stack(batch)


def _torchcodec_decoder_class():
    from pe_dense.extras import MissingExtraError, requires

    try:
        with requires("video", "decoding video files (pe_dense.tracking.video)"):
            from torchcodec.decoders import VideoDecoder
    except MissingExtraError:
        raise
    except ImportError as err:
        raise RuntimeError(f"torchcodec cannot load FFmpeg ({err}). Install FFmpeg's shared libraries, e.g. "
                           "'apt-get install ffmpeg' on Debian/Ubuntu (tools/setup_env.sh does this)") from err
    except (RuntimeError, OSError) as err:
        raise RuntimeError(f"torchcodec cannot load FFmpeg ({err}). Install FFmpeg's shared libraries, e.g. "
                           "'apt-get install ffmpeg' on Debian/Ubuntu (tools/setup_env.sh does this)") from err
    return VideoDecoder


class VideoFileFrames:
    """Frames of a video file (mp4, mkv, avi, ...) decoded on the CPU with torchcodec, batch by batch."""

    def __init__(self, path: str, device: str = "cpu"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video not found: {path}")
        decoder_cls = _torchcodec_decoder_class()
        try:
            self.decoder = decoder_cls(path, dimension_order="NHWC", device=device)
            n = len(self.decoder)
        except Exception as err:  # torchcodec raises ValueError/RuntimeError depending on the failure
            raise ValueError(f"torchcodec cannot decode {path} ({err}). Check that it plays (ffprobe {path}); "
                             "re-encoding usually helps: ffmpeg -i INPUT -c:v libx264 -pix_fmt yuv420p OUT.mp4"
                             ) from err
        if n == 0:
            raise ValueError(f"{path} has no video frames")
        meta = self.decoder.metadata
        self.path = path
        self.size = (int(meta.height), int(meta.width))
        self.fps = float(meta.average_fps or DEFAULT_FPS)
        self.names = [f"{i:05d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.names)

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield self.decoder.get_frames_in_range(start, stop).data.numpy()


def open_frames(path: str, **kw):
    """A frame source for a video file or a folder of images."""
    if os.path.isdir(path):
        return ImageFolderFrames.from_folder(path, **kw)
    if not path.lower().endswith(VIDEO_EXTENSIONS):
        logger.warning("%s does not look like a video (%s); trying torchcodec anyway", path,
                       ", ".join(VIDEO_EXTENSIONS))
    return VideoFileFrames(path, **kw)


# ----------------------------------------------------------------------------------------------- DAVIS layout
def davis_sequences(root: str, split: str = "val", year: str = "2017") -> List[str]:
    """Sequence names listed in ``ImageSets/<year>/<split>.txt``."""
    listing = os.path.join(root, "ImageSets", year, f"{split}.txt")
    if not os.path.isfile(listing):
        raise FileNotFoundError(f"{listing} not found: point --davis at the DAVIS folder holding JPEGImages/, "
                                "Annotations/ and ImageSets/")
    with open(listing) as fh:
        return [line.strip() for line in fh if line.strip()]


def davis_sequence_files(root: str, sequence: str, resolution: str = "480p") -> Tuple[List[str], List[str]]:
    """(frame JPEGs, annotation PNGs) of one sequence, sorted; annotations may cover only the first frame."""
    frames = sorted(glob.glob(os.path.join(root, "JPEGImages", resolution, sequence, "*.jpg")))
    if not frames:
        raise FileNotFoundError(f"no frames in {os.path.join(root, 'JPEGImages', resolution, sequence)}")
    annotations = sorted(glob.glob(os.path.join(root, "Annotations", resolution, sequence, "*.png")))
    return frames, annotations


# ----------------------------------------------------------------------------------------------- overlays
def overlay_labels(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend label colours into an RGB frame (background untouched) and outline each object."""
    out = frame.copy()
    fg = labels > 0
    colours = palette[np.clip(labels, 0, len(palette) - 1)]
    out[fg] = (frame[fg] * (1 - alpha) + colours[fg] * alpha).astype(np.uint8)
    for label in np.unique(labels[fg]):
        contours, _ = cv2.findContours((labels == label).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in palette[label]), 2)
    return out


class OverlayWriter:
    """Streams overlay frames into an mp4 (OpenCV's mp4v encoder) or into numbered PNGs.

    ``mode='mp4'`` falls back to PNGs, with a warning, when OpenCV cannot open an mp4 writer.
    """

    def __init__(self, path_stem: str, fps: float, mode: str = "mp4"):
        if mode not in ("mp4", "png", "none"):
            raise ValueError(f"overlay mode {mode!r}: choose 'mp4', 'png' or 'none'")
        self.stem, self.fps, self.mode = path_stem, fps, mode
        self.writer = None
        self.count = 0
        self.path: Optional[str] = None

    def write(self, frame_rgb: np.ndarray) -> None:
        if self.mode == "none":
            return
        if self.mode == "mp4" and self.writer is None:
            self.path = self.stem + ".mp4"
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            h, w = frame_rgb.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                logger.warning("OpenCV cannot write %s (no mp4 encoder); writing overlay PNGs instead", self.path)
                self.mode, self.writer = "png", None
        if self.mode == "mp4":
            self.writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        else:
            self.path = self.stem
            os.makedirs(self.stem, exist_ok=True)
            cv2.imwrite(os.path.join(self.stem, f"{self.count:05d}.png"), cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
