"""Patch-kernel resize and the convert_checkpoint tool end to end."""
import subprocess
import sys
from pathlib import Path

import torch

from pe_dense.convert.pe import resize_patch_kernel
from pe_dense.models.pe import PEVisionTransformer

TOOL = Path(__file__).resolve().parents[2] / "tools" / "convert_checkpoint.py"


def test_bicubic_patch_resize():
    w = torch.randn(8, 3, 14, 14)
    out = resize_patch_kernel(w, 16)
    assert out.shape == (8, 3, 16, 16)
    const = resize_patch_kernel(torch.full((1, 3, 14, 14), 0.25), 16)
    torch.testing.assert_close(const, torch.full((1, 3, 16, 16), 0.25))
    ramp = torch.linspace(0, 1, 14).expand(1, 3, 14, 14)
    r = resize_patch_kernel(ramp, 16)[0, 0, 0]
    assert torch.all(r[1:] >= r[:-1])  # monotone ramps stay monotone
    assert resize_patch_kernel(w, 14) is w


def test_tool_converts_l14_to_patch16_timm_and_back(tmp_path):
    m = PEVisionTransformer.from_config("PE-Spatial-L14-448", layers=1)
    src = tmp_path / "l14.pt"
    torch.save({"state_dict": m.state_dict()}, src)
    out = tmp_path / "l16.safetensors"
    subprocess.run([sys.executable, str(TOOL), str(src), str(out), "--to", "timm", "--patch-size", "16"], check=True,
                   capture_output=True, cwd=tmp_path)
    # Patch 16 alone: the converted file keeps the 32x32 pretraining grid, which the config keeps too.
    m16 = PEVisionTransformer.from_config("PE-Spatial-L14-448", layers=1, patch_size=16, checkpoint=str(out))
    assert m16.pos_grid == m16.rope_ref_size == 32
    torch.testing.assert_close(m16.conv1.weight, resize_patch_kernel(m.conv1.weight.detach(), 16))
    torch.testing.assert_close(m16.blocks[0].attn.in_proj_weight, m.blocks[0].attn.in_proj_weight)
