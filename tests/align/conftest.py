"""Tiny random models and real photos for the alignment tests."""
import pytest
import torch

from pe_dense.align.sam_targets import SAMTargets, build_sam2_teacher, tiny_sam2_overrides


@pytest.fixture(scope="session")
def photos():
    import skimage.data
    return [torch.from_numpy(getattr(skimage.data, n)()[..., :3].copy()).permute(2, 0, 1)
            for n in ("astronaut", "coffee", "chelsea")]


@pytest.fixture(scope="session")
def tiny_sam():
    torch.manual_seed(0)
    model = build_sam2_teacher("configs/sam2.1/sam2.1_hiera_t.yaml", overrides=tiny_sam2_overrides(128))
    for p in model.parameters():  # random init leaves zero-initialised tensors; perturb so the logits vary
        p.data.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture
def sam_targets(tiny_sam):
    return SAMTargets(tiny_sam, points_per_side=4, chunk_size=8)
