"""Pre-drawn augmented views: view ``v`` of image ``i`` is the training pipeline run under a seed derived from
``(aug_seed, i, v)``.

Why views: random augmentations cannot be replayed on ViT features (a ViT is neither flip- nor crop-equivariant), so
the cache stores the features of ``N`` augmented images per image, and training epoch ``e`` uses view ``e % N``.
The same two classes serve both training paths, so the cached and the image path see identical views:

- :class:`SeededViewDataset` runs the wrapped dataset's pipeline under the view's seed (the image path, and what
  the cache builder runs);
- :class:`ViewSampler` yields, in epoch ``e``, a permutation of the images all at view ``e % N``; dataset index
  ``k`` means view ``k // n_images`` of image ``k % n_images`` in both datasets.
"""
from __future__ import annotations

import itertools
import random
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import Sampler


def view_seed(aug_seed: int, image_index: int, view_index: int) -> int:
    """A 32-bit seed for one view, well mixed (numpy's SeedSequence) so neighbouring views are unrelated."""
    return int(np.random.SeedSequence([int(aug_seed), int(image_index), int(view_index)]).generate_state(1)[0])


@contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python ``random``, numpy's and torch's global generators (what mmcv/mmseg transforms draw from) and
    restore their states afterwards, so drawing a view leaves the training's random streams untouched."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@DATASETS.register_module()
class SeededViewDataset:
    """``num_views`` deterministic augmented views of every sample of ``dataset`` (length ``n * num_views``).

    Args:
        dataset: the training dataset (config or built); its pipeline draws the augmentation.
        num_views: views per image (N).
        aug_seed: the augmentation seed; views differ between seeds.
    """

    def __init__(self, dataset, num_views: int, aug_seed: int = 0):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        if num_views < 1:
            raise ValueError(f"num_views={num_views}: a view cache needs at least one view per image")
        self.num_views, self.aug_seed = int(num_views), int(aug_seed)
        self.num_images = len(self.dataset)
        self.metainfo = getattr(self.dataset, "metainfo", {})

    def __len__(self) -> int:
        return self.num_images * self.num_views

    def get_view(self, image_index: int, view_index: int) -> dict:
        with seeded_rngs(view_seed(self.aug_seed, image_index, view_index)):
            return self.dataset[image_index]

    def __getitem__(self, k: int) -> dict:
        return self.get_view(k % self.num_images, k // self.num_images)


def _unwrap(dataset):
    while isinstance(dataset, SeededViewDataset):
        dataset = dataset.dataset
    return dataset


def dataset_image_list(dataset) -> list:
    """Image paths of a built mmengine dataset in index order, relative to its ``data_root`` (the cache key's
    dataset identity: the view of index ``i`` is seeded by ``i``, so the order matters)."""
    import os.path as osp

    inner = _unwrap(dataset)
    if not isinstance(inner, BaseDataset):
        raise TypeError(f"the feature cache needs an mmengine BaseDataset (e.g. mmseg's), got {type(inner).__name__}")
    root = inner.data_root or ""
    out = []
    for i in range(len(inner)):
        path = inner.get_data_info(i).get("img_path", str(i))
        out.append(osp.relpath(path, root) if root and osp.isabs(path) == osp.isabs(root) else path)
    return out


@DATA_SAMPLERS.register_module()
class ViewSampler(Sampler):
    """Epoch ``e``: every image once (shuffled with ``seed + e``) at view ``e % num_views``.

    The dataset must expose ``num_images`` and ``num_views`` (:class:`SeededViewDataset`,
    ``FeatureCacheDataset``). ``infinite=False``: one epoch per iterator, ``set_epoch`` picks it (mmengine calls it
    in epoch-based loops). ``infinite=True``: epochs back to back without end, as mmengine's ``InfiniteSampler``,
    for iteration-based loops (which otherwise restart the loader every epoch, with a 2 s pause). Single process
    only (no rank sharding).
    """

    def __init__(self, dataset, shuffle: bool = True, seed: Optional[int] = None, infinite: bool = False):
        from mmengine.dist import get_dist_info

        if get_dist_info()[1] > 1:
            raise NotImplementedError("ViewSampler does not shard across processes: train the cached probe on one "
                                      "process (it is cheap), or use the image path without the feature cache")
        self.num_images, self.num_views = int(dataset.num_images), int(dataset.num_views)
        self.shuffle, self.infinite = shuffle, infinite
        self.seed = 0 if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int) -> list:
        view = epoch % self.num_views
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_images, generator=g).tolist()
        else:
            order = range(self.num_images)
        return [view * self.num_images + i for i in order]

    def __iter__(self):
        if not self.infinite:
            return iter(self.epoch_indices(self.epoch))
        return (k for e in itertools.count(self.epoch) for k in self.epoch_indices(e))

    def __len__(self) -> int:
        return self.num_images
