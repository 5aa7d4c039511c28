"""Semantic segmentation on frozen PE features (mmseg). Importing this package registers, in mmseg's registries,
the decode head ``LinearProbeHead`` (MODELS), the transform ``CheckedLoadSegAnnotations`` (TRANSFORMS) and the hook
``SegOverlayHook`` (HOOKS). Configs import it with ``custom_imports=dict(imports=['pe_dense.mm',
'pe_dense.heads.seg'])``.
"""
from pe_dense.extras import requires

with requires("seg", "pe_dense.heads.seg"):
    from .data_checks import (
                              CheckedLoadSegAnnotations,
                              LabelOutOfRangeError,
                              LabelSizeMismatchError,
                              MissingLabelError,
    )
    from .probe_head import PROBES, LinearProbeHead
    from .visualization import SegOverlayHook

__all__ = ["LinearProbeHead", "PROBES", "CheckedLoadSegAnnotations", "MissingLabelError", "LabelSizeMismatchError",
           "LabelOutOfRangeError", "SegOverlayHook"]
