"""NYUv2-style monocular depth on mmseg 1.2.2. Importing registers, in mmseg's registries:
``SlidingDepthEstimator``, ``DepthDataPreProcessor``, ``LinearDepthHead``, ``DPTDepthHead``, ``DepthSiLogLoss``,
``DepthGradientLoss`` (MODELS), ``PEDepthMetric`` (METRICS), ``CheckedLoadDepthAnnotation``, ``DepthColorAug``
(TRANSFORMS) and ``DepthVisualizationHook`` (HOOKS). Configs import it through ``custom_imports``.

Each class fixes or adds one thing to mmseg's depth parts; the module docs say what and why.
"""
from pe_dense.extras import requires

with requires("seg", "pe_dense.heads.depth"):
    from .dpt import DPTDepthHead
    from .estimator import SlidingDepthEstimator
    from .heads import DepthOutput, LinearDepthHead
    from .loading import CheckedLoadDepthAnnotation, DepthDataError
    from .losses import DepthGradientLoss, DepthSiLogLoss, valid_depth_mask
    from .metric import PEDepthMetric, eigen_crop_box, eigen_crop_mask
    from .preprocessor import DepthDataPreProcessor
    from .transforms import DepthColorAug
    from .visualization import DepthVisualizationHook, colorize_depth, depth_panel

__all__ = ["DPTDepthHead", "SlidingDepthEstimator", "DepthOutput", "LinearDepthHead", "CheckedLoadDepthAnnotation",
           "DepthDataError", "DepthGradientLoss", "DepthSiLogLoss", "valid_depth_mask", "PEDepthMetric",
           "eigen_crop_box", "eigen_crop_mask", "DepthDataPreProcessor", "DepthVisualizationHook", "colorize_depth",
           "depth_panel", "DepthColorAug"]
