"""Load an exported artefact with onnxruntime and run it on uint8 RGB images."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .draw import _colour, draw_detections
from .masks import paste_masks
from .preprocess import boxes_to_original, feature_map_to_original, prepare, stack


def read_metadata(path: str, session=None) -> dict:
    """Metadata from the ONNX file itself, else from ``<name>.json`` beside it."""
    if session is not None:
        props = session.get_modelmeta().custom_metadata_map
        if "input_size" in props:
            return {k: json.loads(v) for k, v in props.items()}
    side = os.path.splitext(path)[0] + ".json"
    if not os.path.isfile(side):
        raise FileNotFoundError(f"{path} has no pe_dense metadata inside and no {side} beside it: export it with "
                                "tools/export.py, which writes both")
    with open(side) as f:
        return json.load(f)


class DeployedModel:
    """An exported pe_dense model: ``model(images)`` -> one dict of results per image, in original pixels.

    Feature extractors return ``{output_name: (C, h, w)}`` on the network grid (``features_on_image`` maps one to
    the original pixels); detectors return ``boxes`` (xyxy, original pixels), ``scores``, ``labels`` for the
    ``num_dets`` filled slots; Mask R-CNN adds ``masks`` (N, H0, W0) bool, pasted from the graph's RoI-resolution
    ``roi_masks`` (N, 28, 28) probabilities. Artefacts exported with an ``orig_hw`` input get it fed here.
    """

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):
        from pe_dense.extras import require

        ort = require("deploy", "onnxruntime", "pe_dense.deploy.DeployedModel")

        if not os.path.isfile(path):
            raise FileNotFoundError(f"artefact {path!r} not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, opts, providers=list(providers or ["CPUExecutionProvider"]))
        self.meta = read_metadata(path, self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.extra_inputs = [i.name for i in self.session.get_inputs()[1:]]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def preprocess(self, images: Sequence[np.ndarray]):
        prepared = [prepare(img, self.meta) for img in images]
        return stack([p[0] for p in prepared]), [p[1] for p in prepared]

    def run_batch(self, batch: np.ndarray, orig_hw: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """Raw graph outputs for an already preprocessed (B, 3, H, W) float32 batch (and the (B, 2) original
        (h, w) sizes when the artefact takes them)."""
        fixed = self.meta["batch"]
        if fixed != "dynamic" and batch.shape[0] != fixed:
            raise ValueError(f"this artefact was exported for batch {fixed}, got {batch.shape[0]} images: run them "
                             "in groups of that size or export with --batch dynamic")
        feeds = {self.input_name: batch}
        if "orig_hw" in self.extra_inputs:
            if orig_hw is None:
                raise ValueError("this artefact takes the original image sizes (exported with --orig-size): pass "
                                 "orig_hw, a (B, 2) int64 array of (height, width)")
            feeds["orig_hw"] = np.asarray(orig_hw, np.int64)
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def __call__(self, images: Sequence[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        batch, transforms = self.preprocess(images)
        raw = self.run_batch(batch, np.asarray([t.orig_size for t in transforms], np.int64))
        results = []
        for b, t in enumerate(transforms):
            res = {name: value[b] for name, value in raw.items()}
            if "boxes" in res:
                n = int(res.pop("num_dets"))
                res = {k: v[:n] for k, v in res.items()}
                if self.meta.get("box_frame") != "original":
                    res["boxes"] = boxes_to_original(res["boxes"], t)
                if "masks" in res:  # the graph gives RoI-resolution probabilities; paste them as mmdet does
                    res["roi_masks"] = res.pop("masks")
                    res["masks"] = paste_masks(res["roi_masks"], res["boxes"], t.orig_size,
                                               self.meta.get("mask_threshold", 0.5))
            res["transform"] = t
            results.append(res)
        return results

    def draw(self, img: np.ndarray, result: Dict[str, np.ndarray], score_thr: float = 0.3,
             alpha: float = 0.5) -> np.ndarray:
        """``img`` (the original, HxWx3 uint8) with a detector result's masks blended in and boxes outlined."""
        out = np.array(img, dtype=np.uint8, copy=True)
        shown = (result["scores"] >= score_thr) & (result["labels"] >= 0)
        for mask, label in zip(result.get("masks", [])[shown] if "masks" in result else [], result["labels"][shown]):
            out[mask] = (out[mask] * (1 - alpha) + _colour(label) * alpha).astype(np.uint8)
        return draw_detections(out, result["boxes"], result["scores"], result["labels"], score_thr=score_thr)

    def features_on_image(self, result: Dict[str, np.ndarray], name: str) -> np.ndarray:
        """One output map of a feature-extractor result, resized onto the original image's pixels."""
        return feature_map_to_original(result[name], result["transform"], self.meta["outputs"][name]["stride"])
