"""detectron2 integration: the PE tower as a detectron2 backbone (LazyConfig and ``BACKBONE_REGISTRY``), the
released Mask R-CNN layout, the demo photos as a detectron2 dataset. Configs: ``configs/d2/``; entry point:
``tools/d2_train.py``.

detectron2 is an optional extra with no PyPI release; importing this package without it raises one ImportError
that says how to install it.
"""
INSTALL_HINT = (
    "pe_dense.d2 needs detectron2, which is not on PyPI. Install the extra from a folder holding a detectron2 "
    "wheel: `pip install --find-links WHEEL_DIR 'pe_dense[d2]'` (tools/setup_env.sh does this when "
    "PE_DENSE_WHEELS=WHEEL_DIR is set), or build it from source: `pip install --no-build-isolation "
    "'git+https://github.com/facebookresearch/detectron2.git@02b5c4e'`")

try:
    import detectron2  # noqa: F401
except ImportError as err:
    raise ImportError(INSTALL_HINT) from err

from .backbone import PEViTDetNet, RopeTables, get_pe_lr_decay_rate  # noqa: E402
from .checkpoint import (  # noqa: E402
    CheckpointKeysError,
    StrictDetectionCheckpointer,
    load_detector_checkpoint,
)
from .data import fed_loss_weights_getter, register_demo_dataset  # noqa: E402
from .registry import add_pe_config, build_pe_vitdet_backbone  # noqa: E402

__all__ = ["INSTALL_HINT", "CheckpointKeysError", "PEViTDetNet", "RopeTables", "StrictDetectionCheckpointer",
           "add_pe_config", "build_pe_vitdet_backbone", "fed_loss_weights_getter", "get_pe_lr_decay_rate",
           "load_detector_checkpoint", "register_demo_dataset"]
