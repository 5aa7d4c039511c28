"""bf16/fp16 weights cast once, norms and softmax in fp32, detections close to fp32."""
import numpy as np
import pytest
import torch
from conftest import DETA
from torch import nn
from torch.overrides import TorchFunctionMode

NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
FP32_OPS = {"softmax", "log_softmax", "layer_norm", "group_norm", "batch_norm"}


class RecordDtypes(TorchFunctionMode):
    """Records the input dtype of every softmax and norm call (functions and Tensor methods alike)."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in FP32_OPS and args and torch.is_tensor(args[0]):
            self.seen.setdefault(name, set()).add(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def deta_bf16(demo_coco, deta_ckpt):
    from pe_dense.apis import Detector

    return Detector(DETA, deta_ckpt, precision="bf16", cfg_options={"data_root": demo_coco + "/"})


def test_weights_cast_once_norms_fp32(deta_bf16, demo_photos):
    from pe_dense.apis.precision import cast_weights
    from pe_dense.models.blocks import PEAttention

    model = deta_bf16.model
    before = {n: (p.dtype, p.data_ptr()) for n, p in model.named_parameters()}
    low = [n for n, (d, _) in before.items() if d == torch.bfloat16]
    assert any(".in_proj_weight" in n and n.startswith("backbone") for n in low)  # PE attention projection
    assert any(n.startswith("bbox_head.cls_branches") for n in low)
    for m in model.modules():
        if isinstance(m, NORMS):
            assert all(p.dtype == torch.float32 for p in m.parameters()), m
        if isinstance(m, nn.MultiheadAttention):  # reads its weights directly: kept fp32
            assert all(p.dtype == torch.float32 for p in m.parameters())
        if isinstance(m, (nn.Linear, nn.Conv2d, PEAttention)) and not any(
                m is c for mha in model.modules() if isinstance(mha, nn.MultiheadAttention) for c in mha.modules()):
            assert all(p.dtype == torch.bfloat16 for p in m.parameters(recurse=False)), m
    with RecordDtypes() as rec:
        deta_bf16(demo_photos[0])
    assert {n: (p.dtype, p.data_ptr()) for n, p in model.named_parameters()} == before  # no re-cast per call
    assert rec.seen["softmax"] == {torch.float32} and rec.seen["layer_norm"] == {torch.float32}, rec.seen
    with pytest.raises(RuntimeError, match="already cast"):
        cast_weights(model, "bf16")


def test_bf16_detections_agree_with_fp32(deta, deta_bf16, demo_photos):
    """Tolerance: of the 20 best fp32 detections, at least 90% have a bf16 detection of the same class with
    IoU >= 0.9 and a score within 0.01 (random weights: near-tied queries may swap, hence not 100%)."""
    from mmdet.structures.bbox import bbox_overlaps

    for path in demo_photos:
        a, b = deta(path), deta_bf16(path)
        iou = bbox_overlaps(torch.from_numpy(a.boxes[:20]), torch.from_numpy(b.boxes)).numpy()
        iou = np.where(a.labels[:20, None] == b.labels[None], iou, 0)
        j = iou.argmax(1)
        ok = (iou.max(1) >= 0.9) & (np.abs(a.scores[:20] - b.scores[j]) <= 0.01)
        assert ok.mean() >= 0.9, (path, iou.max(1), a.scores[:20] - b.scores[j])


@pytest.mark.parametrize("precision,tol", [("bf16", 3e-2), ("fp16", 5e-3)])
def test_pe_backbone_cast(precision, tol, real_image):
    from pe_dense.apis.precision import cast_weights
    from pe_dense.models.pe import PEVisionTransformer

    torch.manual_seed(0)
    model = PEVisionTransformer.from_config("PE-Spatial-T16-512", layers=2).eval()
    x = real_image(size=(128, 128))
    with torch.no_grad():
        ref = model.forward_features(x)
        cast_weights(model, precision)
        out = model.forward_features(x)
    assert out.dtype == torch.float32
    assert model.blocks[0].attn.in_proj_weight.dtype != torch.float32
    rel = ((out - ref).norm() / ref.norm()).item()
    assert 0 < rel < tol, rel


def test_unknown_precision_named():
    from pe_dense.apis.precision import resolve_dtype

    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        resolve_dtype("int8")
