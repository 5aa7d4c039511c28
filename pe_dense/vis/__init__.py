"""Pictures of results: feature PCA (and, in the task packages, detections, masks, depth)."""
from .pca import feature_pca_rgb, save_pca_figure

__all__ = ["feature_pca_rgb", "save_pca_figure"]
