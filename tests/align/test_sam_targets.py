"""The batched SAM 2 wrapper against sam2's own SAM2ImagePredictor on a tiny random SAM 2."""
import numpy as np
import pytest
import torch

from pe_dense.align.sam_targets import SAMTargets, point_grid

SIZE = 128  # the tiny SAM's image size (conftest.tiny_sam)


@pytest.fixture
def sam(tiny_sam):
    return tiny_sam


def _photo(name="astronaut"):
    import skimage.data
    import skimage.transform
    img = skimage.transform.resize(getattr(skimage.data, name)(), (SIZE, SIZE), anti_aliasing=True)
    return (img * 255).round().astype(np.uint8)


def test_point_grid_matches_sam2():
    from sam2.utils.amg import build_point_grid
    np.testing.assert_allclose(point_grid(32).numpy(), build_point_grid(32), atol=1e-12)


@pytest.mark.parametrize("mask_output", ["single", "best_iou"])
def test_matches_image_predictor(sam, mask_output):
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    img = _photo()
    wrapper = SAMTargets(sam, points_per_side=4, chunk_size=5, mask_output=mask_output)
    pred = SAM2ImagePredictor(sam)
    s = SIZE // 4  # the predictor hard-codes 1024-px feature sizes (256, 128, 64); set the tiny model's
    pred._bb_feat_sizes = [(s, s), (s // 2, s // 2), (s // 4, s // 4)]
    pred.set_image(img)
    coords = wrapper.points()
    multimask = mask_output == "best_iou"
    _, iou, low = pred._predict(coords[:, None], torch.ones(len(coords), 1, dtype=torch.int),
                                multimask_output=multimask, return_logits=True)
    expected = low[torch.arange(len(coords)), iou.argmax(1)] if multimask else low[:, 0]
    # same image in [0, 1]: the predictor resizes nothing here (already SIZE x SIZE)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    got = wrapper.prompt_logits(x)[0]
    assert got.shape == (16, s, s)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert expected.std() > 0.01  # a non-degenerate comparison


def test_prompt_order_chunking_and_batch_invariance(sam):
    x = torch.stack([torch.from_numpy(_photo(n)).permute(2, 0, 1).float() / 255 for n in ("astronaut", "coffee")])
    wrapper = SAMTargets(sam, points_per_side=4, chunk_size=16)
    ref = wrapper.prompt_logits(x)
    perm = torch.randperm(16)
    shuffled = SAMTargets(sam, points_per_side=4, chunk_size=3).prompt_logits(x, coords=wrapper.points()[perm])
    torch.testing.assert_close(shuffled[:, perm.argsort()], ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(wrapper.prompt_logits(x[1:]), ref[1:], rtol=1e-4, atol=1e-4)


def test_token_grid_targets_area_mean(sam):
    x = torch.from_numpy(_photo()).permute(2, 0, 1)[None].float() / 255
    wrapper = SAMTargets(sam, points_per_side=4)
    t = wrapper(x, token_grid=(8, 8))
    low = wrapper.prompt_logits(x)  # (1, 16, 32, 32): each token is the mean of a 4x4 cell
    assert t.shape == (1, 16, 8, 8) and t.dtype == torch.float32
    torch.testing.assert_close(t[0, :, 2, 5], low[0, :, 8:12, 20:24].mean(dim=(1, 2)))
    assert SAMTargets(sam, points_per_side=4, logit_transform="sigmoid").prompt_logits(x).max() <= 1
    wrapper.train()
    assert not wrapper.training and not wrapper.sam.training
    assert not any(p.requires_grad for p in wrapper.parameters())
    with pytest.raises(ValueError, match="mask_output"):
        SAMTargets(sam, mask_output="all")
