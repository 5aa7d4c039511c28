"""Block masking: ratio, 2x2 block shape, reproducibility, pixel application."""
import pytest
import torch

from pe_dense.align.masking import apply_token_mask, batch_block_masks, block_mask


@pytest.mark.parametrize("grid", [(32, 32), (8, 12)])
def test_ratio_and_block_shape(grid):
    m = block_mask(grid, ratio=0.75, block=(2, 2), seed=3, key=7)
    assert m.shape == grid and m.dtype == torch.bool
    assert m.float().mean().item() == pytest.approx(0.75, abs=0.5 / (grid[0] * grid[1] / 4))
    blocks = m.view(grid[0] // 2, 2, grid[1] // 2, 2)  # every aligned 2x2 cell is all-masked or all-kept
    assert bool((blocks.all(dim=(1, 3)) | ~blocks.any(dim=(1, 3))).all())


def test_seeded_reproducible_and_key_dependent():
    a = batch_block_masks((16, 16), keys=[0, 1, 2], seed=5)
    torch.testing.assert_close(a, batch_block_masks((16, 16), keys=[0, 1, 2], seed=5))
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, batch_block_masks((16, 16), keys=[0, 1, 2], seed=6))
    # a sample's mask does not depend on its batch neighbours
    torch.testing.assert_close(a[2], batch_block_masks((16, 16), keys=[9, 2], seed=5)[1])


def test_odd_grid_crops_border_blocks():
    m = block_mask((5, 7), ratio=1.0)
    assert m.shape == (5, 7) and bool(m.all())


def test_apply_token_mask_zero_pixels():
    x = torch.ones(1, 3, 8, 8)
    m = torch.tensor([[[True, False], [False, False]]])
    y = apply_token_mask(x, m, patch_size=4)
    assert y[0, :, :4, :4].abs().sum() == 0 and bool((y[0, :, 4:, :] == 1).all()) and bool((y[0, :, :, 4:] == 1).all())
    assert apply_token_mask(x, m, 4, method="none") is x
    with pytest.raises(ValueError, match="token grid"):
        apply_token_mask(x, m, patch_size=2)
