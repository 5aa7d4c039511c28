"""OpenMMLab integration. Import explicitly (configs: ``custom_imports=dict(imports=['pe_dense.mm'],
allow_failed_imports=False)``) to register the PE backbone, the pyramids and the lr-decay constructor in
mmdet's and mmseg's registries; importing ``pe_dense`` alone registers nothing."""
from pe_dense.extras import available, requires

with requires("det", "pe_dense.mm"):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

    from .backbone import PE_DATA_PREPROCESSOR, PEBackbone
    from .necks import DETAPyramid, SimpleFeaturePyramid, check_pyramid_contract
    from .optim import LayerDecayOptimWrapperConstructor
_mmseg_registry = available("mmseg.registry")  # the 'seg' extra: also register in mmseg's MODELS

for _registry in (MMDET_MODELS, *([_mmseg_registry.MODELS] if _mmseg_registry else [])):
    for _cls in (PEBackbone, SimpleFeaturePyramid, DETAPyramid):
        _registry.register_module(module=_cls)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayOptimWrapperConstructor)

__all__ = ["PEBackbone", "PE_DATA_PREPROCESSOR", "SimpleFeaturePyramid", "DETAPyramid", "check_pyramid_contract",
           "LayerDecayOptimWrapperConstructor"]
