"""A cache built for another setting is refused, naming the differing key field and how to rebuild."""
import shutil

import pytest
import torch
from _feature_cache_tiny import tiny_cfg

from pe_dense.features import FeatureCacheError, apply_feature_cache, build_feature_cache

# one config change per key field (each must be refused by a cache built with the defaults)
CHANGES = {
    "model": {"model.backbone.model_name": "PE-Spatial-S16-512"},
    "checkpoint": {"randomness.seed": 1},
    "out_indices": {"model.backbone.out_indices": (0,)},
    "backbone_options": {"model.backbone.rope_mode": "timm"},
    "input_size": {"model.data_preprocessor.size": (48, 48)},
    "preprocessing": {"model.data_preprocessor.mean": [120.0, 127.5, 127.5]},
    "pipeline": {"train_dataloader.dataset.pipeline.4.prob": 0.25},
    "aug_seed": {"feature_cache.aug_seed": 7},
    "dtype": {"feature_cache.dtype": "float16"},
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_builder_refuses_each_key_field(fp32_cache, photo_root, tmp_path, field):
    cache_dir, _ = fp32_cache
    cfg = tiny_cfg(photo_root, cache_dir, tmp_path, **CHANGES[field])
    with pytest.raises(FeatureCacheError) as err:
        build_feature_cache(cfg)
    msg = str(err.value)
    assert f"differing key fields: {field}" in msg, msg
    assert "tools/cache_features.py" in msg and "--overwrite" in msg


def test_other_dataset_is_refused(fp32_cache, photo_root, tmp_path):
    """Same layout, one image fewer: the ordered image list is part of the key."""
    other = tmp_path / "photos"
    shutil.copytree(photo_root, other)
    for sub in ("images", "labels"):
        (other / sub / "0003.png").unlink()
    cfg = tiny_cfg(other, fp32_cache[0], tmp_path)
    with pytest.raises(FeatureCacheError, match="differing key fields: dataset"):
        build_feature_cache(cfg)


def test_checkpoint_hash_is_the_file_content(make_cfg, tmp_path):
    """Two checkpoint files with different weights give different keys; the message names the field."""
    from pe_dense.mm import PEBackbone

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"w{seed}.pt"
        torch.save(PEBackbone("PE-Spatial-T16-512", model_overrides=dict(layers=2)).state_dict(), path)
        paths.append(str(path))
    build_feature_cache(make_cfg(**{"model.backbone.checkpoint": paths[0], "feature_cache.num_views": 1}))
    with pytest.raises(FeatureCacheError, match=r"differing key fields: checkpoint\n  checkpoint: cache has "
                                                r"\"sha256:[0-9a-f]{64}\", the config needs \"sha256:"):
        build_feature_cache(make_cfg(**{"model.backbone.checkpoint": paths[1], "feature_cache.num_views": 1}))


def test_training_refuses_a_stale_cache(fp32_cache, photo_root, tmp_path):
    """The training side checks the same key: the cached dataset refuses another pipeline."""
    from mmengine.registry import DATASETS, init_default_scope

    cfg = apply_feature_cache(tiny_cfg(photo_root, fp32_cache[0], tmp_path, **CHANGES["pipeline"]))
    init_default_scope("mmseg")
    with pytest.raises(FeatureCacheError, match=r"pipeline\[4\]\.prob: cache has 0\.5, the config needs 0\.25"):
        DATASETS.build(cfg.train_dataloader.dataset)


@pytest.mark.parametrize("options, needle", [
    ({"randomness.seed": None}, "randomness=dict(seed=0)"),
    ({"model.backbone.frozen": False}, "frozen=True"),
    ({"model.data_preprocessor.size": None}, "data_preprocessor.size"),
    ({"model.data_preprocessor.batch_augments": [dict(type="Mixup")]}, "batch_augments"),
    ({"feature_cache.dir": None}, "feature_cache.dir"),
])
def test_uncachable_configs_are_refused_with_the_fix(make_cfg, options, needle):
    with pytest.raises(ValueError) as err:
        build_feature_cache(make_cfg(**options))
    assert needle in str(err.value)
