"""Zero-shot video label propagation (DAVIS-2017 protocol) on frozen PE-Spatial token features.

``propagate`` runs the protocol on any (T, C, h, w) features; ``davis_jf`` scores predictions with the
DAVIS-2017 J&F rules; ``pipeline`` ties frames, features, propagation and outputs together for tools/track.py.
"""
from .metrics import JFResult, boundary_f, boundary_map, davis_jf, region_jaccard
from .propagate import LabelPropagator, propagate
from .resize import nearest_resize, protocol_frame_size

__all__ = ["propagate", "LabelPropagator", "davis_jf", "JFResult", "region_jaccard", "boundary_f", "boundary_map",
           "nearest_resize", "protocol_frame_size"]
