"""Frozen-feature cache for probes (segmentation and depth) on a frozen PE backbone. Registration module: import
it through ``custom_imports=dict(imports=['pe_dense.features'], ...)`` to register the ``FeatureCacheRunner``,
``FeatureCacheDataset``, ``SeededViewDataset``, ``ViewSampler`` and ``FeatureCacheDataPreprocessor`` (the
``FeatureCache<segmentor>`` classes are registered when a config asks for them). ``tools/cache_features.py``
builds a cache (:func:`build_feature_cache`).
"""
from .builder import build_feature_cache
from .key import CacheSettings, cache_key, check_key
from .store import FeatureCacheError
from .training import (
    FeatureCacheDataPreprocessor,
    FeatureCacheDataset,
    FeatureCacheMixin,
    FeatureCacheRunner,
    apply_feature_cache,
    cached_segmentor_type,
)
from .views import SeededViewDataset, ViewSampler, view_seed

__all__ = ["build_feature_cache", "CacheSettings", "cache_key", "check_key", "FeatureCacheError",
           "FeatureCacheDataPreprocessor", "FeatureCacheDataset", "FeatureCacheMixin", "FeatureCacheRunner",
           "apply_feature_cache", "cached_segmentor_type",
           "SeededViewDataset", "ViewSampler", "view_seed"]
