"""Segmentation pictures for ``tools/test.py --show-dir``: mmseg's hook, plus the output folder of our tools' contract.

mmseg 1.2.2's ``SegVisualizationHook`` only sends pictures to the visualizer's backends (``vis_data/`` under the
work dir, every ``interval``-th image). Our tools call ``default_hooks.visualization.update(draw=True,
test_out_dir=DIR)`` for every task; with ``test_out_dir`` set, :class:`SegOverlayHook` writes one PNG per test image,
named after the photo: mmseg's ``SegLocalVisualizer`` drawing, i.e. the ground-truth overlay (when the sample has
labels) next to the prediction overlay.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

import mmcv
from mmengine import fileio
from mmengine.utils import mkdir_or_exist
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class SegOverlayHook(SegVisualizationHook):
    """``SegVisualizationHook`` that also writes every test image's overlay to ``test_out_dir``.

    Args:
        test_out_dir: folder for the test pictures; a relative path is taken under ``work_dir/<timestamp>/``
            (as mmdet's hook does). None: mmseg's behaviour.
        with_labels: print class names on the overlay (mmseg's default True).
        other args: as mmseg's ``SegVisualizationHook``.
    """

    def __init__(self, test_out_dir: Optional[str] = None, with_labels: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.test_out_dir = test_out_dir
        self.with_labels = with_labels

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.draw:
            return
        if self.test_out_dir is None:
            return super().after_test_iter(runner, batch_idx, data_batch, outputs)
        out_dir = self.test_out_dir
        if not osp.isabs(out_dir):
            out_dir = osp.join(runner.work_dir, runner.timestamp, out_dir)
        mkdir_or_exist(out_dir)
        for sample in outputs:
            img = mmcv.imfrombytes(fileio.get(sample.img_path, backend_args=self.backend_args), channel_order="rgb")
            name = osp.splitext(osp.basename(sample.img_path))[0] + ".png"
            self._visualizer.add_datasample(name, img, data_sample=sample, draw_gt="gt_sem_seg" in sample,
                                            draw_pred=True, out_file=osp.join(out_dir, name),
                                            with_labels=self.with_labels)
