"""Cache files: resumable and byte-identical after interruption, memory-mapped, fp16 within rounding, damage named."""
import os

import numpy as np
import pytest
import torch
from mmengine.registry import DATASETS, init_default_scope

from pe_dense.features import FeatureCacheError, apply_feature_cache, build_feature_cache
from pe_dense.features import builder as builder_module


def _files(root):
    return {name: open(os.path.join(root, name), "rb").read() for name in sorted(os.listdir(root))}


def _dataset(cfg):
    init_default_scope("mmseg")
    return DATASETS.build(apply_feature_cache(cfg).train_dataloader.dataset)


def test_resume_after_interruption_equals_uninterrupted(fp32_cache, make_cfg, monkeypatch):
    cfg = make_cfg()
    report = build_feature_cache(cfg, max_new_shards=2)  # a time-limited job: stops after 2 of 4 shards
    assert (report.shards_written, report.shards_remaining) == (2, 2)

    real_write, calls = builder_module.atomic_write, []

    def killed_while_writing(path, data):  # dies after the temp file of the next shard is written
        calls.append(path)
        if path.endswith(".npy"):
            folder = os.path.dirname(path)
            open(os.path.join(folder, ".tmp_partial_" + os.path.basename(path)), "wb").write(data[:100])
            raise KeyboardInterrupt("killed")
        real_write(path, data)

    monkeypatch.setattr(builder_module, "atomic_write", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(cfg)
    monkeypatch.setattr(builder_module, "atomic_write", real_write)
    with pytest.raises(FeatureCacheError, match="incomplete: 2 of the 4 shards"):
        _dataset(cfg)  # an interrupted cache is not trained on
    report = build_feature_cache(cfg)
    assert (report.shards_written, report.shards_remaining) == (2, 0)
    for tmp in [n for n in os.listdir(cfg.feature_cache.dir) if n.startswith(".tmp_")]:
        os.unlink(os.path.join(cfg.feature_cache.dir, tmp))  # the killed job's leftover, never listed
    assert _files(cfg.feature_cache.dir) == _files(fp32_cache[0])


def test_samples_are_memory_mapped(fp32_cache, photo_root, tmp_path):
    from _feature_cache_tiny import tiny_cfg

    ds = _dataset(tiny_cfg(photo_root, fp32_cache[0], tmp_path))
    assert len(ds) == 8 and not ds._open  # opening reads no shard
    sample = ds[5]  # view 1, image 1 -> shard view001_part00000, row 1
    records, _ = ds._open["view001_part00000"]
    assert isinstance(records, np.memmap) and records.mode == "r"
    assert os.path.basename(records.filename) == "view001_part00000.npy"
    assert list(ds._open) == ["view001_part00000"]
    assert torch.equal(sample["features"]["map0"], torch.from_numpy(np.array(records[1]["map0"])))
    assert sample["features"]["map0"].shape == (192, 4, 4)
    gt = sample["data_samples"].gt_sem_seg.data
    assert gt.dtype == torch.int64 and gt.shape == (1, 64, 64) and set(gt.unique().tolist()) <= {0, 1, 2, 3, 255}


def test_fp16_round_trip_within_rounding(fp32_cache, make_cfg):
    cfg = make_cfg(**{"feature_cache.dtype": "float16", "feature_cache.num_views": 1})
    build_feature_cache(cfg)
    half = np.load(os.path.join(cfg.feature_cache.dir, "view000_part00000.npy"), mmap_mode="r")
    full = np.load(os.path.join(fp32_cache[0], "view000_part00000.npy"), mmap_mode="r")
    assert half["map0"].dtype == np.float16 and full["map0"].dtype == np.float32
    x, y = full["map0"].astype(np.float64), half["map0"].astype(np.float64)
    # round-to-nearest fp16: relative error <= 2^-11 for normal numbers, absolute <= 2^-25 in the subnormal range
    assert np.all(np.abs(y - x) <= np.maximum(2.0 ** -11 * np.abs(x), 2.0 ** -25))
    assert np.abs(y - x).max() > 0  # it really was rounded
    assert np.array_equal(half["gt_sem_seg"], full["gt_sem_seg"])  # labels are stored exactly


def test_fp16_overflow_is_an_error():
    from pe_dense.features.builder import _feature_arrays

    with pytest.raises(FeatureCacheError, match="dtype='float32'"):
        _feature_arrays((torch.full((1, 2, 1, 1), 7e4),), "float16")


def test_truncated_or_missing_shard_is_named(fp32_cache, make_cfg):
    cfg = make_cfg()
    build_feature_cache(cfg)
    shard = os.path.join(cfg.feature_cache.dir, "view001_part00001.npy")
    good = open(shard, "rb").read()
    open(shard, "wb").write(good[:-10])
    with pytest.raises(FeatureCacheError) as err:
        _dataset(cfg)
    assert f"shard {shard} is truncated" in str(err.value) and "tools/cache_features.py" in str(err.value)
    os.unlink(shard)
    with pytest.raises(FeatureCacheError, match=f"shard {shard} .* is missing"):
        _dataset(cfg)
    report = build_feature_cache(cfg)  # rebuilding recomputes exactly that shard
    assert report.shards_written == 1 and open(shard, "rb").read() == good


def test_damaged_header_is_named_when_read(fp32_cache, make_cfg):
    cfg = make_cfg()
    build_feature_cache(cfg)
    shard = os.path.join(cfg.feature_cache.dir, "view000_part00000.npy")
    data = bytearray(open(shard, "rb").read())
    data[:6] = b"garbag"  # same size, not an .npy any more
    open(shard, "wb").write(bytes(data))
    ds = _dataset(cfg)
    with pytest.raises(FeatureCacheError, match=f"shard {shard} cannot be read .*tools/cache_features.py"):
        ds[0]
    assert build_feature_cache(cfg, verify=True).shards_written == 1  # --verify finds it by its hash


def test_more_views_extend_the_cache(fp32_cache, make_cfg):
    cfg = make_cfg(**{"feature_cache.num_views": 1})
    build_feature_cache(cfg)
    first = _files(cfg.feature_cache.dir)
    with pytest.raises(FeatureCacheError, match="--views 2 \\(it resumes\\)"):
        _dataset(make_cfg(**{"feature_cache.num_views": 2}))
    assert build_feature_cache(make_cfg(**{"feature_cache.num_views": 2})).shards_written == 2
    now = _files(cfg.feature_cache.dir)
    assert all(now[k] == v for k, v in first.items() if k != "manifest.json")
    assert now == _files(fp32_cache[0])
