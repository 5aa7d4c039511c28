"""DAVIS-2017 semi-supervised metrics: region similarity J, boundary F-measure, and J&F.

Written to the rules of the official DAVIS 2017 evaluation (no maintained PyPI package computes it):

* void pixels (label 255) count as background, in the ground truth as in the prediction;
* the objects are 1..max(label) of the first ground-truth frame; a predicted label above that is an error;
* the first and the last frame are not scored;
* J is the IoU of one object's masks (1 when both are empty);
* F compares one-pixel boundary maps (each pixel against its right, bottom and bottom-right neighbours, with
  edge padding), matched within ``ceil(bound_th * image diagonal)`` pixels by dilating with a disk;
* per object: mean, recall (fraction of frames > 0.5) and decay (first quarter minus last quarter);
* J&F = (mean J over all objects of all videos + mean F over the same) / 2: objects weigh equally, videos do not.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Union

import cv2
import numpy as np
from skimage.morphology import disk

LabelMaps = Sequence[np.ndarray]

DEFAULT_BOUND_TH = 0.008  # boundary tolerance as a fraction of the image diagonal
DEFAULT_VOID_LABEL = 255
RECALL_THRESHOLD = 0.5
DECAY_BINS = 4


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask: pixels that differ from their right, bottom or bottom-right
    neighbour, the image edge padded by replication (so the last row/column compare only along the edge)."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, ((0, 1), (0, 1)), mode="edge")
    return (m != padded[:-1, 1:]) | (m != padded[1:, :-1]) | (m != padded[1:, 1:])


def boundary_tolerance(shape, bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Matching distance in pixels: ``bound_th`` itself when >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def region_jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """IoU of two binary masks; two empty masks agree perfectly (1.0)."""
    gt, pred = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Boundary F-measure of two binary masks with DAVIS's tolerance and empty-boundary conventions."""
    gt_b, pred_b = boundary_map(gt), boundary_map(pred)
    n_gt, n_pred = int(gt_b.sum()), int(pred_b.sum())
    if n_gt == 0 or n_pred == 0:
        # both empty: perfect; only one empty: precision or recall is 0, so F = 0
        return 1.0 if n_gt == n_pred else 0.0
    kernel = disk(boundary_tolerance(gt_b.shape, bound_th)).astype(np.uint8)
    gt_near = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    pred_near = cv2.dilate(pred_b.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pred_b & gt_near) / n_pred
    recall = np.count_nonzero(gt_b & pred_near) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def davis_statistics(per_frame: np.ndarray) -> Dict[str, float]:
    """Mean, recall (share of frames above 0.5) and decay (mean of the first quarter of the frames minus the
    last quarter; quarter edges rounded as DAVIS does, neighbouring quarters share their edge frame)."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        return dict(mean=float("nan"), recall=float("nan"), decay=float("nan"))
    edges = (np.round(np.linspace(1, len(values), DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    bins = [values[edges[i]: edges[i + 1] + 1] for i in range(DECAY_BINS)]
    return dict(mean=float(np.mean(values)), recall=float(np.mean(values > RECALL_THRESHOLD)),
                decay=float(np.mean(bins[0]) - np.mean(bins[-1])))


@dataclasses.dataclass
class ObjectScore:
    sequence: str
    object_id: int
    j_per_frame: np.ndarray
    f_per_frame: np.ndarray

    @property
    def j(self) -> Dict[str, float]:
        return davis_statistics(self.j_per_frame)

    @property
    def f(self) -> Dict[str, float]:
        return davis_statistics(self.f_per_frame)


@dataclasses.dataclass
class JFResult:
    """J&F of a set of videos, with per-object and per-sequence tables."""

    objects: List[ObjectScore]

    def _mean(self, key: str, stat: str) -> float:
        vals = [getattr(o, key)[stat] for o in self.objects]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def j_mean(self) -> float:
        return self._mean("j", "mean")

    @property
    def f_mean(self) -> float:
        return self._mean("f", "mean")

    @property
    def jf(self) -> float:
        return (self.j_mean + self.f_mean) / 2

    def summary(self) -> Dict[str, float]:
        """The DAVIS global table: J&F-Mean, J-Mean/Recall/Decay, F-Mean/Recall/Decay."""
        out = {"J&F-Mean": self.jf}
        for key in ("j", "f"):
            for stat in ("mean", "recall", "decay"):
                out[f"{key.upper()}-{stat.capitalize()}"] = self._mean(key, stat)
        return out

    def per_object(self) -> List[Dict[str, object]]:
        return [{"Sequence": o.sequence, "Object": o.object_id, "J-Mean": o.j["mean"], "F-Mean": o.f["mean"],
                 "J&F-Mean": (o.j["mean"] + o.f["mean"]) / 2} for o in self.objects]

    def per_sequence(self) -> List[Dict[str, object]]:
        """One row per video: its objects' means (for reading; the global J&F weighs objects, not videos)."""
        rows: Dict[str, List[ObjectScore]] = {}
        for o in self.objects:
            rows.setdefault(o.sequence, []).append(o)
        table = []
        for seq, objs in rows.items():
            j = float(np.mean([o.j["mean"] for o in objs]))
            f = float(np.mean([o.f["mean"] for o in objs]))
            table.append({"Sequence": seq, "Objects": len(objs), "J-Mean": j, "F-Mean": f, "J&F-Mean": (j + f) / 2})
        return table


def _as_label_map(x, name: str) -> np.ndarray:
    arr = x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) label map, got shape {arr.shape}")
    return arr.astype(np.int64)


def score_sequence(gts: LabelMaps, preds: LabelMaps, name: str = "video", *, bound_th: float = DEFAULT_BOUND_TH,
                   void_label: Optional[int] = DEFAULT_VOID_LABEL, skip_first_last: bool = True) -> List[ObjectScore]:
    """Per-frame J and F of every object of one video (objects = 1..max label of the first GT frame)."""
    if len(gts) != len(preds):
        raise ValueError(f"{name}: {len(gts)} ground-truth frames but {len(preds)} predicted frames; predict "
                         "every frame of the video (frame 0 is the given mask)")
    if len(gts) == 0:
        raise ValueError(f"{name}: no frames to score")
    gts = [_as_label_map(g, f"{name} ground truth {i}") for i, g in enumerate(gts)]
    preds = [_as_label_map(p, f"{name} prediction {i}") for i, p in enumerate(preds)]
    if void_label is not None:
        gts = [np.where(g == void_label, 0, g) for g in gts]
        preds = [np.where(p == void_label, 0, p) for p in preds]
    num_objects = int(gts[0].max())
    frames = range(1, len(gts) - 1) if skip_first_last else range(len(gts))
    j = np.zeros((num_objects, len(frames)))
    f = np.zeros((num_objects, len(frames)))
    for col, t in enumerate(frames):
        gt, pred = gts[t], preds[t]
        if gt.shape != pred.shape:
            raise ValueError(f"{name} frame {t}: prediction {pred.shape} and ground truth {gt.shape} differ in "
                             "size; resize predictions to the annotation size with nearest-neighbour")
        if pred.max(initial=0) > num_objects:
            raise ValueError(f"{name} frame {t}: predicted label {int(pred.max())} but the first ground-truth "
                             f"frame has only {num_objects} objects")
        for obj in range(num_objects):
            j[obj, col] = region_jaccard(gt == obj + 1, pred == obj + 1)
            f[obj, col] = boundary_f(gt == obj + 1, pred == obj + 1, bound_th)
    return [ObjectScore(name, obj + 1, j[obj], f[obj]) for obj in range(num_objects)]


def davis_jf(gts: Union[LabelMaps, Mapping[str, LabelMaps]], preds: Union[LabelMaps, Mapping[str, LabelMaps]], *,
             bound_th: float = DEFAULT_BOUND_TH, void_label: Optional[int] = DEFAULT_VOID_LABEL,
             skip_first_last: bool = True) -> JFResult:
    """DAVIS-2017 J&F of one video (lists of (H, W) label maps) or of several ({name: list} for both).

    ``result.jf``, ``.j_mean``, ``.f_mean``; ``result.summary()`` for the global table, ``.per_object()`` and
    ``.per_sequence()`` for the tables (see :func:`write_tables`).
    """
    if isinstance(gts, Mapping) != isinstance(preds, Mapping):
        raise TypeError("pass both gts and preds as lists (one video) or both as {sequence: list} mappings")
    if not isinstance(gts, Mapping):
        gts, preds = {"video": gts}, {"video": preds}
    missing = [s for s in gts if s not in preds]
    if missing:
        raise KeyError(f"no predictions for sequences {missing}")
    objects: List[ObjectScore] = []
    for seq in gts:
        objects += score_sequence(gts[seq], preds[seq], seq, bound_th=bound_th, void_label=void_label,
                                  skip_first_last=skip_first_last)
    return JFResult(objects)


def format_table(rows: List[Dict[str, object]], digits: int = 3) -> str:
    """Plain-text table of dict rows (same keys), numbers rounded."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[f"{r[k]:.{digits}f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_tables(result: JFResult, out_dir: str, digits: int = 3) -> Dict[str, str]:
    """Write global, per-sequence and per-object CSVs (the names the DAVIS toolkit uses for the first two)."""
    os.makedirs(out_dir, exist_ok=True)
    tables = {"global_results.csv": [result.summary()], "per-sequence_results.csv": result.per_sequence(),
              "per-object_results.csv": result.per_object()}
    paths = {}
    for fname, rows in tables.items():
        path = os.path.join(out_dir, fname)
        with open(path, "w", newline="") as fh:
            if rows:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows([{k: (round(v, digits) if isinstance(v, float) else v) for k, v in r.items()}
                                  for r in rows])
        paths[fname] = path
    return paths
