"""DETA on mmdet: importing this package registers ``DETA``, ``DETAHead`` and ``DETATTAModel`` in mmdet's
``MODELS`` (``pe_dense.mm`` imports it, so configs only need ``custom_imports=dict(imports=['pe_dense.mm'])``).

Layout: ``detector`` (what DETA changes before the decoder), ``head`` (losses and inference),
``assignment`` (IoU one-to-many assignment), ``query_selection``, ``postprocess`` (NMS, quad soft-NMS),
``tta`` (flip + multi-scale merging), ``resize`` (the release's test-time resize).
"""
from pe_dense.extras import requires

with requires("det", "pe_dense.heads.deta"):
    from .assignment import (
                             IoUAssignment,
                             IoUOneToManyAssigner,
                             cap_positives_per_gt,
                             stage1_assigner_cfg,
                             stage2_assigner_cfg,
    )
    from .detector import DETA
    from .head import DETAHead
    from .postprocess import nms_over_queries, soft_nms
    from .query_selection import select_queries, select_queries_one_image
    from .resize import DETRResize, detr_resize_shape
    from .tta import DETATTAModel

__all__ = ["DETA", "DETAHead", "DETATTAModel", "IoUAssignment", "IoUOneToManyAssigner", "cap_positives_per_gt",
           "stage1_assigner_cfg", "stage2_assigner_cfg", "nms_over_queries", "soft_nms", "select_queries",
           "select_queries_one_image", "DETRResize", "detr_resize_shape"]
