"""Robot-side runner for pe_dense export artefacts: numpy + onnxruntime only (no torch, no OpenMMLab).

``DeployedModel(path)`` loads an artefact and its metadata, preprocesses images by the rule the metadata names,
runs them and maps results back to original-image pixels; ``draw_detections`` draws them and ``paste_masks``
pastes Mask R-CNN's RoI masks into the image. Tested with torch
unimportable (tests/export/test_deploy.py).
"""
from .draw import draw_detections
from .masks import paste_masks
from .preprocess import Transform, boxes_to_original, prepare, resize_bilinear
from .runner import DeployedModel

__all__ = ["DeployedModel", "Transform", "boxes_to_original", "draw_detections", "paste_masks", "prepare",
           "resize_bilinear"]
