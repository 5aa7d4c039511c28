"""The released DETA's test-time resize, as an mmdet transform (``DETRResize``).

The PE release resizes like the DETR reference transforms: the short side goes to ``size`` unless that would
push the long side past ``max_size`` (then the short side becomes ``round(max_size * short / long)``), and the
long side is *truncated*, ``int(size * long / short)``; the image is resized by PIL's bilinear filter, which
antialiases when it shrinks. mmdet's ``Resize(keep_ratio=True)`` rounds the long side instead (about half of all
image sizes come out one pixel different) and resizes with OpenCV (no antialiasing): normalised pixels then differ
by up to 1.6 on a real photo. Pair it with ``CheckedLoadImageFromFile(imdecode_backend='pillow')`` to decode the
JPEG as the release did.
"""
from __future__ import annotations

from typing import Optional, Tuple

from mmdet.datasets.transforms import Resize
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import autocast_box_type


def detr_resize_shape(height: int, width: int, size: int, max_size: Optional[int] = None) -> Tuple[int, int]:
    """Output (height, width) of the DETR reference resize of a ``height x width`` image to short side ``size``."""
    short, long = float(min(height, width)), float(max(height, width))
    if max_size is not None and long / short * size > max_size:
        size = int(round(max_size * short / long))
    if min(height, width) == size:
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


@TRANSFORMS.register_module()
class DETRResize(Resize):
    """Resize to short side ``size`` with the long side at most ``max_size``, by the DETR rule (see module doc).

    Boxes, masks and maps follow with the exact per-axis scale, as in mmdet's ``Resize(keep_ratio=False)``.
    """

    def __init__(self, size: int, max_size: Optional[int] = None, backend: str = "pillow",
                 interpolation: str = "bilinear", clip_object_border: bool = True):
        super().__init__(scale=(size, size), keep_ratio=False, clip_object_border=clip_object_border,
                         backend=backend, interpolation=interpolation)
        self.size, self.max_size = size, max_size

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        out_h, out_w = detr_resize_shape(h, w, self.size, self.max_size)
        results["scale"] = (out_w, out_h)
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, max_size={self.max_size}, backend={self.backend}, "
                f"interpolation={self.interpolation})")
