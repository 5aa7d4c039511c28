"""One-call inference: ``Detector``, ``Segmenter``, ``DepthEstimator``, ``Tracker``.

    from pe_dense.apis import Detector
    det = Detector("configs/deta_pe_l14_coco.py", "deta_l14.pth", device="cuda", precision="bf16")
    res = det("photo.jpg")                 # Detections: boxes in original pixels, scores, labels, class names, masks
    res.save("photo_det.png"); coco = res.to_coco(image_id=1)

Imports are lazy: importing this package pulls in neither mmdet nor mmseg; each class imports its OpenMMLab stack when
it is first used, so ``Tracker`` works with torch alone.
"""
from importlib import import_module

_WHERE = {
    "Detector": ".detector",
    "Segmenter": ".dense",
    "DepthEstimator": ".dense",
    "Tracker": ".tracker",
    "Detections": ".results",
    "Segmentation": ".results",
    "DepthMap": ".results",
    "Track": ".results",
    "cast_weights": ".precision",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'pe_dense.apis' has no attribute {name!r}; it offers {', '.join(__all__)}")
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value
