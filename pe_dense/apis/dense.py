"""``Segmenter`` (the ADE20k/VOC linear probe) and ``DepthEstimator`` (DPT depth) on mmseg's inferencer."""
from __future__ import annotations

import logging

import numpy as np
from mmseg.apis import MMSegInferencer

from .base import MMPredictor, dataset_metainfo, meta_from_checkpoint
from .inputs import inference_pipeline
from .results import DepthMap, Segmentation

logger = logging.getLogger(__name__)


class PESegInferencer(MMSegInferencer):
    """mmseg's inferencer with our pipelines (checked loaders, annotation loaders dropped) and class names and
    palette from the checkpoint, else the config (mmseg falls back to Cityscapes')."""

    def _init_pipeline(self, cfg):
        from mmcv.transforms import Compose

        return Compose(inference_pipeline(cfg.test_dataloader.dataset.pipeline, "mmseg.InferencerLoader"))

    def _load_weights_to_model(self, model, checkpoint, cfg):
        from mmengine.runner.checkpoint import _load_checkpoint_to_model

        if checkpoint is not None:
            _load_checkpoint_to_model(model, checkpoint)
        else:
            logger.warning("no checkpoint: the model has RANDOM weights (fine for tests, meaningless outputs)")
        meta = dataset_metainfo(cfg)
        meta.update({k: v for k, v in meta_from_checkpoint(checkpoint).items() if v is not None})
        model.dataset_meta = meta


class _SegBase(MMPredictor):
    def _build_inferencer(self, cfg, checkpoint, device):
        return PESegInferencer(cfg, checkpoint, device=device)


class Segmenter(_SegBase):
    """``Segmenter(config, checkpoint=None, device='cpu', precision='fp32', batch_size=1)``;
    ``seg(image | path | list)`` -> ``Segmentation`` (label map at the original size, class names, palette)."""

    def _convert(self, pred, path, image) -> Segmentation:
        palette = self.dataset_meta.get("palette")
        if palette is None:
            from pe_dense.tracking.video import davis_palette

            palette = davis_palette()
        return Segmentation(labels=pred.pred_sem_seg.data[0].cpu().numpy().astype(np.int64),
                            class_names=self.class_names, palette=np.asarray(palette, dtype=np.uint8),
                            path=path, image=image)


class DepthEstimator(_SegBase):
    """``DepthEstimator(config, checkpoint=None, ...)``; ``depth(image | path | list)`` -> ``DepthMap`` (metres,
    original size) with a colour map."""

    def _convert(self, pred, path, image) -> DepthMap:
        head = getattr(self.model, "decode_head", None)
        ranges = [m.max_depth for m in (head.modules() if head is not None else ()) if hasattr(m, "max_depth")]
        return DepthMap(depth=pred.pred_depth_map.data[0].float().cpu().numpy(),
                        max_depth=float(ranges[0]) if ranges else None, path=path, image=image)
