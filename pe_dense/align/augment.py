"""One augmentation pass shared by the student and both teachers (PE alignment recipe, PE_FACTS section 5).

Every random number is drawn from a generator seeded by (seed, sample key), and the drawn parameters are returned,
so a view can be re-created exactly (resume, another rank) and the SAM target cache can be keyed by them. The view
is RGB in [0, 1]; each model applies its own normalisation afterwards (PE: mean = std = 0.5, SAM: ImageNet).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import List, Sequence, Tuple

import torch
import torchvision.transforms.v2.functional as TF

from .masking import _generator


@dataclass(frozen=True)
class ViewParams:
    """Crop box (pixels of the source image), flip and colour factors of one view."""

    top: int
    left: int
    height: int
    width: int
    flip: bool
    brightness: float
    saturation: float

    def key(self) -> str:
        return ",".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={int(v)}" for k, v in asdict(self).items())


def sample_view(image_hw: Tuple[int, int], seed: int, key: int, aspect: Tuple[float, float] = (0.75, 1.33),
                scale: Tuple[float, float] = (1.0, 1.0), flip_p: float = 0.5, brightness: float = 0.32,
                saturation: float = 0.32) -> ViewParams:
    """Aspect jitter: a crop of area ``scale`` x image with aspect log-uniform in ``aspect`` (shrunk to fit),
    placed uniformly; the published scale range is unknown, so the default keeps the whole area (scale 1)."""
    g = _generator(seed, key)
    u = torch.rand(6, generator=g, dtype=torch.float64).tolist()
    h, w = image_hw
    area = h * w * (scale[0] + (scale[1] - scale[0]) * u[0])
    ratio = math.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * u[1])
    cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
    shrink = min(1.0, w / cw, h / ch)
    cw, ch = max(1, int(round(cw * shrink))), max(1, int(round(ch * shrink)))
    top, left = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
    return ViewParams(top, left, ch, cw, u[4] < flip_p, 1 + brightness * (2 * u[5] - 1),
                      1 + saturation * (2 * torch.rand(1, generator=g, dtype=torch.float64).item() - 1))


def render_view(image: torch.Tensor, params: ViewParams, size: Tuple[int, int]) -> torch.Tensor:
    """uint8 or [0, 1] float (3, H, W) -> float (3, *size) in [0, 1]: crop, resize (bilinear, antialiased), flip,
    brightness then saturation (the order of torchvision's ColorJitter with hue = 0)."""
    x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    x = TF.resized_crop(x, params.top, params.left, params.height, params.width, list(size), antialias=True)
    if params.flip:
        x = TF.horizontal_flip(x)
    x = TF.adjust_brightness(x, params.brightness)
    x = TF.adjust_saturation(x, params.saturation)
    return x.clamp(0, 1)


def pe_normalise(views: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> PE's input (mean = std = 0.5)."""
    return (views - 0.5) / 0.5


class ViewSampler:
    """Which image and which view each global sample index gets: a per-epoch permutation seeded by (seed, epoch)
    and ``sample_view`` seeded by (seed, sample index). Shared by the trainer and the SAM target cache builder, so
    both produce the same views, and the data position of a run is its step counter."""

    def __init__(self, images: Sequence[torch.Tensor], image_size: int, batch_size: int, accum_steps: int = 1,
                 seed: int = 0, aspect: Tuple[float, float] = (0.75, 1.33), flip_p: float = 0.5,
                 brightness: float = 0.32, saturation: float = 0.32, rank: int = 0, world_size: int = 1):
        if len(images) == 0:
            raise ValueError("no training images: check the image folder (data.root) of the config")
        self.images, self.image_size, self.batch_size, self.accum_steps = images, image_size, batch_size, accum_steps
        self.seed, self.aspect, self.flip_p = seed, tuple(aspect), flip_p
        self.brightness, self.saturation = brightness, saturation
        self.rank, self.world_size = rank, world_size

    def samples(self, step: int, micro: int = 0) -> List[Tuple[int, int]]:
        """(global sample index, image index) pairs of micro-batch ``micro`` of optimizer step ``step`` on this rank:
        the ranks' micro-batches are consecutive blocks, so world_size x accum_steps x batch_size samples per step."""
        first = ((step * self.accum_steps + micro) * self.world_size + self.rank) * self.batch_size
        return [self.sample(g) for g in range(first, first + self.batch_size)]

    def sample(self, g: int) -> Tuple[int, int]:
        """(g, image index) of global sample ``g``: position g % N of epoch g // N's permutation."""
        n = len(self.images)
        return g, int(torch.randperm(n, generator=_generator(self.seed + 1, g // n))[g % n])

    def views(self, samples: Sequence[Tuple[int, int]]) -> Tuple[torch.Tensor, List[str]]:
        """(B, 3, S, S) views in [0, 1] and their keys ``sample=g;img=i;<view params>``."""
        out, keys = [], []
        for g, i in samples:
            image = self.images[i]
            p = sample_view(tuple(image.shape[-2:]), self.seed, g, self.aspect, flip_p=self.flip_p,
                            brightness=self.brightness, saturation=self.saturation)
            out.append(render_view(image, p, (self.image_size, self.image_size)))
            keys.append(f"sample={g};img={i};{p.key()}")
        return torch.stack(out), keys
