"""Feature PCA picture: the components separate what the features separate, and the demo writes it."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from pe_dense.vis import feature_pca_rgb

DEMO = Path(__file__).resolve().parents[2] / "tools" / "demo.py"


def test_pca_colours_follow_feature_clusters():
    feats = torch.randn(16, 8, 8) * 0.01
    feats[:, :, :4] += torch.randn(16, 1, 1) * 5  # left half: one direction, right half: another
    feats[:, :, 4:] += torch.randn(16, 1, 1) * 5
    rgb = feature_pca_rgb(feats)
    assert rgb.shape == (8, 8, 3) and rgb.min() >= 0 and rgb.max() <= 1
    left, right = rgb[:, :4].reshape(-1, 3), rgb[:, 4:].reshape(-1, 3)
    assert np.abs(left.mean(0) - right.mean(0)).max() > 0.8  # the first component splits the halves
    assert left.std(0).max() < 0.3 and right.std(0).max() < 0.3


def test_shared_basis_colours_tokens_consistently_across_frames():
    """With a basis given, a token's colour depends on its feature, not on which frame it sits in."""
    a = torch.randn(8, 6, 6)
    perm = torch.randperm(36)
    b = a.reshape(8, 36)[:, perm].reshape(8, 6, 6)  # same tokens, shuffled
    tokens = a.reshape(8, 36).t()
    basis = torch.linalg.svd(tokens - tokens.mean(0), full_matrices=False)[2][:3].t()
    ra, rb = feature_pca_rgb(a, basis).reshape(36, 3), feature_pca_rgb(b, basis).reshape(36, 3)
    np.testing.assert_allclose(rb, ra[perm.numpy()], atol=1e-5)


def test_demo_writes_image_and_pca_side_by_side(tmp_path):
    out = subprocess.run([sys.executable, str(DEMO), "--size", "128", "--out-dir", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    img = cv2.imread(str(tmp_path / "o" / "feature_pca_PE-Spatial-T16-512.png"))
    assert img.shape == (128, 256, 3)
    pca = img[:, 128:]
    blocks = pca.reshape(8, 16, 8, 16, 3)  # 8x8 tokens, each a flat 16x16 block (nearest upsampling)
    assert (blocks[2:].std(axis=(1, 3)) < 1).all()  # (the top rows carry the title text)
    assert pca.reshape(-1, 3).std(0).max() > 20  # not a flat picture
    assert "random weights" in out.stderr
