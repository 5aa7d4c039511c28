"""Training the probe from the cache equals training it on images with the same pre-drawn views."""
import pytest
import torch
from _feature_cache_tiny import tiny_cfg

from pe_dense.features import ViewSampler


def _train(cfg):
    from pe_dense.engine.runner import train

    runner = train(cfg)
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    return runner.model, torch.as_tensor(losses, dtype=torch.float64)


def _head(model):
    return {k: v.detach().clone() for k, v in model.decode_head.state_dict().items()}


@pytest.fixture(scope="module")
def image_run(photo_root, tmp_path_factory):
    """The reference: 6 iterations on images, same views (source='images', views drawn on the fly)."""
    work = tmp_path_factory.mktemp("image_run")
    return _train(tiny_cfg(photo_root, work / "unused", work, **{"feature_cache.source": "images"}))


def test_cached_training_equals_image_training(image_run, fp32_cache, photo_root, tmp_path):
    from pe_dense.heads.seg import LinearProbeHead

    cache_dir, _ = fp32_cache
    model, losses = _train(tiny_cfg(photo_root, cache_dir, tmp_path))
    ref_model, ref_losses = image_run
    assert type(model).__name__ == "FeatureCacheEncoderDecoder" and type(ref_model).__name__ == "EncoderDecoder"
    assert type(model.decode_head) is type(ref_model.decode_head) is LinearProbeHead  # same head module
    assert len(losses) == len(ref_losses) == 6
    # fp32 cache: the only difference is the backbone's batch composition (1-2 images per forward), ~1e-7 relative
    torch.testing.assert_close(losses, ref_losses, rtol=1e-5, atol=1e-6)
    head, ref_head = _head(model), _head(ref_model)
    for k in ref_head:
        torch.testing.assert_close(head[k], ref_head[k], rtol=1e-4, atol=1e-6)
    # the frozen backbone was rebuilt with the same random init and never changed
    for k, v in ref_model.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_other_views_give_a_different_head(image_run, photo_root, tmp_path):
    """Control: the comparison above can fail. Another augmentation seed draws other views, and the head differs
    far beyond the tolerance used there."""
    model, losses = _train(tiny_cfg(photo_root, tmp_path / "unused", tmp_path,
                                    **{"feature_cache.source": "images", "feature_cache.aug_seed": 1}))
    ref_model, ref_losses = image_run
    assert not torch.allclose(losses, ref_losses, rtol=1e-3)
    head, ref_head = _head(model), _head(ref_model)
    assert max((head[k].float() - ref_head[k].float()).abs().max() for k in ref_head) > 1e-3


def test_view_sampler_epoch_uses_view_e_mod_n():
    class _DS:
        num_images, num_views = 3, 2

    sampler = ViewSampler(_DS(), shuffle=True, seed=0)
    epochs = []
    for e in range(4):
        sampler.set_epoch(e)
        epochs.append(list(sampler))
    for e, idx in enumerate(epochs):
        assert sorted(idx) == [(e % 2) * 3 + i for i in range(3)], (e, idx)
    assert epochs[0] != epochs[2] or epochs[1] != epochs[3]  # reshuffled per epoch
    endless = iter(ViewSampler(_DS(), shuffle=True, seed=0, infinite=True))
    assert [next(endless) for _ in range(12)] == sum(epochs, [])  # the same epochs back to back


def test_config_rewrite(make_cfg):
    from pe_dense.features import apply_feature_cache

    plain = make_cfg(**{"feature_cache.dir": None})
    assert apply_feature_cache(plain) is plain  # no cache asked for: the config trains on images as written
    cached = apply_feature_cache(make_cfg())
    assert cached.model.type == "FeatureCacheEncoderDecoder"
    assert cached.model.data_preprocessor.preprocessor.type == "SegDataPreProcessor"
    assert cached.train_dataloader.sampler == dict(type="ViewSampler", shuffle=True, infinite=True)
    assert cached.model.decode_head == plain.model.decode_head and cached.model.backbone == plain.model.backbone
    assert apply_feature_cache(cached).to_dict() == cached.to_dict()  # a dumped, rewritten config stays as it is
