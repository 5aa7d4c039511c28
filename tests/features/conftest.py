"""Fixtures for the feature-cache tests: a 4-photo segmentation set and the tiny probe config."""
import pytest
from _feature_cache_tiny import tiny_cfg


@pytest.fixture(scope="session")
def photo_root(tmp_path_factory):
    from pe_dense.features.photo_set import write_photo_seg_set

    root = str(tmp_path_factory.mktemp("photos"))
    write_photo_seg_set(root, count=4, short_side=96)
    return root


@pytest.fixture
def make_cfg(photo_root, tmp_path):
    """``make_cfg(**cfg_options)`` -> the tiny probe config on the photo set, cache in tmp_path/cache."""
    return lambda **options: tiny_cfg(photo_root, tmp_path / "cache", tmp_path / "work", **options)


@pytest.fixture(scope="session")
def fp32_cache(photo_root, tmp_path_factory):
    """A complete fp32 cache of the tiny config (2 views x 2 shards), built once: (cache dir, config)."""
    from pe_dense.features import build_feature_cache

    base = tmp_path_factory.mktemp("fp32_cache")
    cfg = tiny_cfg(photo_root, base / "cache", base / "work")
    build_feature_cache(cfg)
    return str(base / "cache"), cfg
