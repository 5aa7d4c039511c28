"""Draw detections with numpy alone (no OpenCV on the robot side): class-coloured box outlines."""
from __future__ import annotations

import numpy as np


def _colour(label: int) -> np.ndarray:
    rng = np.random.default_rng(int(label) + 1)  # stable per class
    return rng.integers(64, 256, 3).astype(np.uint8)


def draw_detections(img: np.ndarray, boxes, scores, labels, score_thr: float = 0.3,
                    thickness: int = 2) -> np.ndarray:
    """A copy of HxWx3 uint8 ``img`` with outlines of boxes (xyxy, image pixels) scoring >= ``score_thr``.

    Empty slots (label -1 / score 0) are skipped.
    """
    out = np.array(img, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    for box, score, label in zip(np.asarray(boxes), np.asarray(scores), np.asarray(labels)):
        if label < 0 or score < score_thr:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, x1 = np.clip([x0, x1], 0, w - 1)
        y0, y1 = np.clip([y0, y1], 0, h - 1)
        c, t = _colour(label), thickness
        out[y0:min(y0 + t, y1 + 1), x0:x1 + 1] = c
        out[max(y1 - t + 1, y0):y1 + 1, x0:x1 + 1] = c
        out[y0:y1 + 1, x0:min(x0 + t, x1 + 1)] = c
        out[y0:y1 + 1, max(x1 - t + 1, x0):x1 + 1] = c
    return out
