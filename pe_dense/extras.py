"""Optional dependencies ("extras"): one error naming the extra to install when a module needs a missing package.

``pip install pe_dense`` gives the backbone, checkpoint loading and conversion, feature PCA and tracking with
torch-level packages only; the rest comes with extras (setup.cfg ``[options.extras_require]``)::

    det     mmengine, mmcv, mmdet (+ pycocotools, lvis)   pe_dense.mm, pe_dense.engine, heads.deta, heads.mask_rcnn
    seg     det + mmsegmentation (+ ftfy, regex)           heads.seg, heads.depth, the probe/depth configs
    video   torchcodec                                    tracking on video files (DAVIS frame folders need none)
    align   sam2, mmengine, timm                          pe_dense.align's SAM 2 targets and trainer
    export  onnx, onnxscript, onnxruntime, openvino       pe_dense.export
    deploy  onnxruntime                                   pe_dense.deploy (robot side: numpy + onnxruntime)
    d2      detectron2 (from a wheel folder) + its deps   pe_dense.d2
    all     everything above but d2

Import sites wrap their imports in ``with requires("det", "pe_dense.mm"):`` (or call :func:`require`): a missing
package of that extra becomes :class:`MissingExtraError`; any other import error (a broken install, a bug) passes
through unchanged, so nothing is hidden behind an install hint.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from types import ModuleType
from typing import Dict, Iterator, Optional, Tuple

from pe_dense.errors import PEDenseError

# extra -> top-level import names it provides (the PyPI names are in setup.cfg; tests/test_extras.py ties the two).
EXTRAS: Dict[str, Tuple[str, ...]] = {
    "det": ("mmengine", "mmcv", "mmdet", "pycocotools", "lvis"),
    "seg": ("mmengine", "mmcv", "mmdet", "mmseg", "ftfy", "regex"),
    "video": ("torchcodec",),
    "align": ("sam2", "mmengine", "timm"),
    "export": ("onnx", "onnxscript", "onnxruntime", "openvino"),
    "deploy": ("onnxruntime",),
    "d2": ("detectron2", "fvcore", "yacs"),
}


class MissingExtraError(PEDenseError, ImportError):
    """A package of an optional extra is not installed."""


def install_hint(extra: str) -> str:
    if extra == "d2":
        return ("pip install --find-links WHEEL_DIR 'pe_dense[d2]' (detectron2 has no PyPI release: WHEEL_DIR holds "
                "its wheel; tools/setup_env.sh does this with PE_DENSE_WHEELS=WHEEL_DIR)")
    return f"pip install 'pe_dense[{extra}]'"


def _missing_extra(extra: str, user: str, err: ModuleNotFoundError) -> MissingExtraError:
    return MissingExtraError(f"{user} needs the '{extra}' extra ({err.name} is not installed): {install_hint(extra)}"
                             " - or, in a clone of the repository, tools/setup_env.sh installs every extra")


@contextmanager
def requires(extra: str, user: str) -> Iterator[None]:
    """Turn a missing package of ``extra`` raised by the imports in this block into :class:`MissingExtraError`."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {sorted(EXTRAS)}")
    try:
        yield
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in EXTRAS[extra]:
            raise _missing_extra(extra, user, err) from err
        raise


def require(extra: str, module: str, user: Optional[str] = None) -> ModuleType:
    """Import and return ``module``, or raise :class:`MissingExtraError` naming ``extra`` when a package of it is
    missing. ``user``: what needs it, for the message (default: ``module``)."""
    with requires(extra, user or module):
        return importlib.import_module(module)


def available(module: str) -> Optional[ModuleType]:
    """``module`` if it imports, else None (for optional registrations, e.g. into mmseg when it is installed)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] == module.split(".")[0]:
            return None
        raise
