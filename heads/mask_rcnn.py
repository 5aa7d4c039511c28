"""What our ViTDet-style Mask R-CNN configs need beyond mmdet, registered on import:

- ``LN2d`` norm layer (channel LayerNorm on NCHW, as ViTDet's RPN-free conv heads use: ``norm_cfg=dict(type='LN2d',
  eps=1e-6)``), registered in mmengine's root ``MODELS`` so mmcv's ``build_norm_layer`` finds it from any scope;
- the LVIS federated loss head and its class-weights hook (``pe_dense.heads.fed_loss``);
- ``ContiguousRoIExtractor``: the RoI extractor our configs use, safe for any memory layout of the maps
  (``pe_dense.heads.roi_extractor``).

Configs import it with ``custom_imports=dict(imports=['pe_dense.heads.mask_rcnn'])``.
"""
from pe_dense.extras import requires

with requires("det", "pe_dense.heads.mask_rcnn"):
    from mmengine.registry import MODELS as ROOT_MODELS

    from pe_dense.mm.necks import LayerNorm2d

    from .fed_loss import (  # noqa: F401
        FederatedConvFCBBoxHead,
        FedLossClassWeightsHook,
        SigmoidFederatedLoss,
        fed_loss_classes,
        federated_sigmoid_loss,
    )
    from .roi_extractor import ContiguousRoIExtractor  # noqa: F401

if ROOT_MODELS.get("LN2d") is None:
    ROOT_MODELS.register_module(name="LN2d", module=LayerNorm2d)

__all__ = ["LayerNorm2d", "ContiguousRoIExtractor", "FederatedConvFCBBoxHead", "SigmoidFederatedLoss",
           "FedLossClassWeightsHook", "fed_loss_classes", "federated_sigmoid_loss"]
