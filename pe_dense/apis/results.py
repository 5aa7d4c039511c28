"""Plain result objects (numpy only) returned by the one-call APIs, each able to draw and save itself."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np


def _load_rgb(image: Optional[np.ndarray], path: Optional[str]) -> np.ndarray:
    if image is not None:
        return image
    if path is None:
        raise ValueError("this result keeps neither the image nor its path: pass image=... to draw()")
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot re-read {path} to draw on it (moved or deleted?): pass image=...")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _save_rgb(rgb: np.ndarray, path: str) -> str:
    import cv2

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"OpenCV cannot write {path}: use an image extension such as .png or .jpg")
    return path


def class_colour(label: int) -> np.ndarray:
    """A stable colour per class (the same as pe_dense.deploy's drawings)."""
    from pe_dense.deploy.draw import _colour

    return _colour(label)


@dataclass
class Detections:
    """Detections of one image. ``boxes`` (N, 4) xyxy in original pixels, ``scores`` (N,), ``labels`` (N,)
    class indices, ``class_names`` (N,) their names, ``masks`` (N, H, W) bool or None."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: List[str]
    masks: Optional[np.ndarray] = None
    image_size: tuple = ()
    path: Optional[str] = None
    image: Optional[np.ndarray] = field(default=None, repr=False)
    category_ids: Optional[Sequence[int]] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score_thr: float) -> "Detections":
        keep = self.scores >= score_thr
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep],
                          [n for n, k in zip(self.class_names, keep) if k],
                          None if self.masks is None else self.masks[keep], self.image_size, self.path, self.image,
                          self.category_ids)

    def draw(self, score_thr: float = 0.3, image: Optional[np.ndarray] = None, alpha: float = 0.5) -> np.ndarray:
        """RGB uint8 picture: masks blended in, box outlines and ``name score`` captions (OpenCV)."""
        import cv2

        from pe_dense.deploy.draw import draw_detections

        out = np.array(_load_rgb(image if image is not None else self.image, self.path), copy=True)
        kept = self.above(score_thr)
        if kept.masks is not None:
            for m, lab in zip(kept.masks, kept.labels):
                out[m] = (out[m] * (1 - alpha) + class_colour(lab) * alpha).astype(np.uint8)
        out = draw_detections(out, kept.boxes, kept.scores, kept.labels, score_thr=score_thr)
        for box, score, lab, name in zip(kept.boxes, kept.scores, kept.labels, kept.class_names):
            x0, y0 = int(box[0]), max(int(box[1]) - 4, 10)
            cv2.putText(out, f"{name} {score:.2f}", (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        tuple(int(c) for c in class_colour(lab)), 1, cv2.LINE_AA)
        return out

    def save(self, path: str, score_thr: float = 0.3) -> str:
        return _save_rgb(self.draw(score_thr), path)

    def to_coco(self, image_id: int, category_ids: Optional[Sequence[int]] = None) -> List[Dict]:
        """COCO result entries (``loadRes`` format): ``bbox`` as [x, y, w, h], ``segmentation`` as RLE when masks
        exist. ``category_ids[label]`` maps class indices to the annotation file's ids (default: the detector's,
        read from its dataset's annotation file, else label + 1)."""
        ids = category_ids if category_ids is not None else self.category_ids
        rles = None
        if self.masks is not None and len(self.masks):
            from pycocotools import mask as mask_utils

            rles = mask_utils.encode(np.asfortranarray(self.masks.transpose(1, 2, 0).astype(np.uint8)))
        out = []
        for i, (box, score, lab) in enumerate(zip(self.boxes, self.scores, self.labels)):
            x0, y0, x1, y1 = (float(v) for v in box)
            entry = dict(image_id=int(image_id), category_id=int(ids[lab]) if ids is not None else int(lab) + 1,
                         bbox=[x0, y0, x1 - x0, y1 - y0], score=float(score))
            if rles is not None:
                rle = dict(rles[i])
                rle["counts"] = rle["counts"].decode("ascii")
                entry["segmentation"] = rle
            out.append(entry)
        return out


@dataclass
class Segmentation:
    """Semantic segmentation of one image: ``labels`` (H, W) int class map at the original size."""

    labels: np.ndarray
    class_names: List[str]
    palette: np.ndarray
    path: Optional[str] = None
    image: Optional[np.ndarray] = field(default=None, repr=False)

    def colour(self) -> np.ndarray:
        return self.palette[np.clip(self.labels, 0, len(self.palette) - 1)]

    def draw(self, alpha: float = 0.5, image: Optional[np.ndarray] = None) -> np.ndarray:
        """The photo with the palette-coloured label map blended over it (RGB uint8)."""
        rgb = _load_rgb(image if image is not None else self.image, self.path)
        return (rgb * (1 - alpha) + self.colour() * alpha).astype(np.uint8)

    def save(self, path: str, alpha: float = 0.5) -> str:
        return _save_rgb(self.draw(alpha), path)


@dataclass
class DepthMap:
    """Monocular depth of one image: ``depth`` (H, W) float32 metres at the original size."""

    depth: np.ndarray
    max_depth: Optional[float] = None
    path: Optional[str] = None
    image: Optional[np.ndarray] = field(default=None, repr=False)

    def colour(self, max_depth: Optional[float] = None) -> np.ndarray:
        """Depth as an RGB colour map (near = bright), scaled to ``max_depth`` (default: the model's range)."""
        import cv2

        top = max_depth or self.max_depth or float(np.nanmax(self.depth)) or 1.0
        scaled = np.clip(self.depth / top, 0, 1)
        bgr = cv2.applyColorMap(((1 - scaled) * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def draw(self, image: Optional[np.ndarray] = None) -> np.ndarray:
        """Photo | colour map side by side (RGB uint8)."""
        rgb = _load_rgb(image if image is not None else self.image, self.path)
        return np.concatenate([rgb, self.colour()], axis=1)

    def save(self, path: str) -> str:
        return _save_rgb(self.draw(), path)


@dataclass
class Track:
    """Masks of one video: ``masks`` one (H, W) uint8 label map per frame (0 = background, k = object k)."""

    masks: List[np.ndarray]
    palette: np.ndarray
    names: List[str]
    fps: float = 24.0

    def __len__(self) -> int:
        return len(self.masks)

    def save(self, out_dir: str, frames=None, overlay: str = "mp4", alpha: float = 0.5) -> Optional[str]:
        """Palette PNGs ``out_dir/<frame>.png``; with ``frames`` (the video, an iterable of RGB arrays) also an
        overlay video ``out_dir/overlay.mp4`` (``overlay='png'`` for frames). Returns the overlay path."""
        from pe_dense.tracking.video import OverlayWriter, overlay_labels, write_label_png

        for name, m in zip(self.names, self.masks):
            write_label_png(os.path.join(out_dir, f"{name}.png"), m, self.palette)
        if frames is None:
            return None
        writer = OverlayWriter(os.path.join(out_dir, "overlay"), fps=self.fps, mode=overlay)
        try:
            for frame, m in zip(frames, self.masks):
                writer.write(overlay_labels(np.asarray(frame), m, self.palette, alpha))
        finally:
            writer.close()
        return writer.path
