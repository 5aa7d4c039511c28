"""Bad segmentation labels get a named error instead of silent damage.

mmseg's ``LoadAnnotations`` lets three problems through: a missing label PNG surfaces as a bare ``FileNotFoundError``
from the file backend (or an ``AttributeError`` for an undecodable file); a label map of another size than its
image is cropped and flipped at the wrong coordinates without complaint; and label values outside the classes
either crash the cross-entropy with "Target N is out of bounds" (CPU) / a device-side assert (CUDA), or are
silently dropped by ``IoUMetric``'s histogram. :class:`CheckedLoadSegAnnotations` loads exactly as mmseg does
(``reduce_zero_label``, ``label_map``) and then checks, naming the file and the fix.
"""
from __future__ import annotations

import numpy as np
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

from pe_dense.errors import PEDenseError


class MissingLabelError(PEDenseError, FileNotFoundError):
    """An image has no (readable) label PNG."""


class LabelSizeMismatchError(PEDenseError, ValueError):
    """A label PNG's size differs from its image's."""


class LabelOutOfRangeError(PEDenseError, ValueError):
    """A label PNG holds values that are neither a class nor the ignore index."""


@TRANSFORMS.register_module()
class CheckedLoadSegAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` plus checks; put it after the image loader (it compares with ``ori_shape``).

    Args:
        num_classes: valid labels are ``0 .. num_classes - 1`` after ``reduce_zero_label`` and ``label_map``.
        ignore_index: the one other value allowed (255: mmseg's default, and ADE20k's "other" after reduction).
        other args: as mmseg's ``LoadAnnotations``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)

    def _load_seg_map(self, results: dict) -> None:
        path = results.get("seg_map_path")
        image = results.get("img_path", "?")
        try:
            super()._load_seg_map(results)
        except FileNotFoundError as err:
            raise MissingLabelError(
                f"label PNG {path} of image {image} not found. Every image needs a label map named like it "
                "(data_prefix.seg_map_path + the image name + seg_map_suffix): add the file, fix data_prefix / "
                "seg_map_suffix, or remove the image from the image folder or ann_file") from err
        except (AttributeError, OSError, ValueError) as err:  # PIL cannot identify it, or cv2 returned None
            raise MissingLabelError(f"label file {path} of image {image} is not a decodable image: replace it with "
                                    "a single-channel PNG of class indices") from err
        seg = results["gt_seg_map"]
        ori = results.get("ori_shape")
        if ori is not None and tuple(seg.shape[:2]) != tuple(ori[:2]):
            raise LabelSizeMismatchError(
                f"label PNG {path} is {seg.shape[1]}x{seg.shape[0]} (WxH) but its image {image} is "
                f"{ori[1]}x{ori[0]}: labels must be pixel-aligned with their image. Re-export the label at the "
                "image size (nearest-neighbour if you resize it), or check that image and label are a pair")
        counts = np.bincount(seg.ravel(), minlength=256)
        values = np.flatnonzero(counts)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size:
            reduce = results.get("reduce_zero_label", self.reduce_zero_label)
            raise LabelOutOfRangeError(
                f"label PNG {path} holds values {bad.tolist()} ({int(counts[bad].sum())} pixels), outside the "
                f"{self.num_classes} classes 0..{self.num_classes - 1} and not the ignore index {self.ignore_index} "
                f"(after reduce_zero_label={reduce}). Check the model's num_classes and the dataset's classes, "
                "reduce_zero_label (ADE20k: True, values 1..150 become 0..149) and label_map, or fix the file")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"reduce_zero_label={self.reduce_zero_label})")
