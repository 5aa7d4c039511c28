"""Float32 parity with timm's independent PE port, weights copied across through our converter."""
import pytest
import timm
import torch

from pe_dense.models.checkpoint import official_to_timm
from pe_dense.models.configs import PE_CONFIGS
from pe_dense.models.pe import PEVisionTransformer

SPATIAL = [n for n in PE_CONFIGS if n.startswith("PE-Spatial")]
# L and G are run with reduced depth to keep the suite fast; every block is identical code.
DEPTH = {"PE-Spatial-L14-448": 3, "PE-Spatial-G14-448": 2}


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def _pair(name, **ours):
    cfg = PE_CONFIGS[name]
    depth = DEPTH.get(name, cfg.layers)
    model = PEVisionTransformer.from_config(name, layers=depth, **ours).eval()
    if cfg.ls_init is not None:  # make LayerScale non-trivial so a dropped gamma would show
        for n, p in model.named_parameters():
            if n.endswith("gamma"):
                p.data.uniform_(0.05, 0.5)
    ref = timm.create_model(cfg.timm_name, pretrained=False, depth=depth, dynamic_img_size=True).eval()
    ref.load_state_dict(official_to_timm(model.state_dict()), strict=True)
    return model, ref


@pytest.mark.parametrize("name", SPATIAL)
def test_native_size_matches_timm(name, real_image):
    model, ref = _pair(name)
    x = real_image(size=(PE_CONFIGS[name].image_size,) * 2)
    with torch.no_grad():
        ours, theirs = model.forward_features(x), ref.forward_features(x)
    assert ours.shape == theirs.shape
    assert rel_err(ours, theirs) < 1e-5


@pytest.mark.parametrize("name,size", [("PE-Spatial-T16-512", (384, 640)), ("PE-Spatial-S16-512", (640, 448)),
                                       ("PE-Spatial-L14-448", (280, 616)), ("PE-Spatial-G14-448", (336, 588))])
def test_other_sizes_match_timm_in_timm_mode(name, size, real_image):
    model, ref = _pair(name, rope_mode="timm", pos_embed_resize="bicubic")
    x = real_image("coffee", size=size)
    with torch.no_grad():
        ours, theirs = model.forward_features(x), ref.forward_features(x)
    assert ours.shape == theirs.shape
    assert rel_err(ours, theirs) < 1e-5


def test_official_mode_differs_from_timm_off_native_size(real_image):
    """Guards against the two schemes silently collapsing into one."""
    model, ref = _pair("PE-Spatial-T16-512")
    x = real_image(size=(384, 640))
    with torch.no_grad():
        assert rel_err(model.forward_features(x), ref.forward_features(x)) > 1e-3
