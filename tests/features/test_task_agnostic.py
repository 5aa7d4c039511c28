"""The cache is task-agnostic: any ``gt_*`` pixel field is stored (labels exactly, depth as float32) and any mmseg
EncoderDecoder-style segmentor gets a feature-cache subclass."""
import numpy as np
import pytest
import torch

from pe_dense.features import FeatureCacheError, FeatureCacheMixin, cached_segmentor_type
from pe_dense.features.builder import _gt_array


def test_labels_use_the_smallest_exact_integer_type_and_depth_float32():
    assert _gt_array("gt_sem_seg", torch.tensor([[0, 149, 255]])).dtype == np.uint8
    wide = _gt_array("gt_sem_seg", torch.tensor([[0, 3000, -1]]))
    assert wide.dtype == np.int16 and wide.tolist() == [[0, 3000, -1]]
    depth = torch.tensor([[0.0, 1e-3, 9.87654321]], dtype=torch.float32)
    stored = _gt_array("gt_depth_map", depth)
    assert stored.dtype == np.float32 and np.array_equal(stored, depth.numpy())  # targets are never rounded
    with pytest.raises(FeatureCacheError, match="beyond int32"):
        _gt_array("gt_sem_seg", torch.tensor([2 ** 40]))


def test_depth_estimators_get_a_cached_subclass():
    import pe_dense.heads.depth  # noqa: F401  (registers SlidingDepthEstimator)
    from mmseg.registry import MODELS

    name = cached_segmentor_type("SlidingDepthEstimator")
    cls = MODELS.get(name)
    assert name == "FeatureCacheSlidingDepthEstimator" and cached_segmentor_type(name) == name
    assert issubclass(cls, FeatureCacheMixin) and issubclass(cls, MODELS.get("SlidingDepthEstimator"))
    assert cls.extract_feat is FeatureCacheMixin.extract_feat
    with pytest.raises(ValueError, match="EncoderDecoder-style segmentor"):
        cached_segmentor_type("PEBackbone")
