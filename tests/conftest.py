"""Shared fixtures: small real photos from scikit-image, normalised as PE expects."""
import numpy as np
import pytest
import torch


def _real_image(name: str = "astronaut", size=(512, 512)) -> torch.Tensor:
    """A (1, 3, H, W) float tensor of a real photo, resized and normalised with mean = std = 0.5."""
    import skimage.data
    import torch.nn.functional as F

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    x = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x - 0.5) / 0.5


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Every test starts without an mmengine default scope. Runners and ``init_default_scope`` leave theirs behind
    (mmseg after a probe test, mmdet after a detector test), and registry lookups in later tests would follow it, so
    a test would pass or fail with the order. mmengine has no public way to drop a scope: clear its instances."""
    from mmengine.registry import DefaultScope

    DefaultScope._instance_dict.clear()  # also what a session fixture set up for this test left
    yield
    DefaultScope._instance_dict.clear()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def real_image():
    """``real_image(name="astronaut", size=(H, W))`` -> normalised (1, 3, H, W) photo."""
    return _real_image
