"""Per-image preprocessing, run in DataLoader workers on Pillow images; the output is a uint8 ``(c, h, w)`` tensor.

* evaluation (:class:`EvalTransform`): resize the shorter side to ``size / crop_pct`` (antialiased), then the
  centre crop of ``size``: timm's evaluation transform (``crop_pct`` 0.875 by default);
* training (:class:`TrainTransform`): random resized crop (scale 0.08-1, aspect 3/4-4/3), horizontal flip, and
  optionally RandAugment (arXiv:1909.13719) with DeiT's magnitude noise.

Normalisation happens on whole batches on the training device (:mod:`vit_core.training.data.batch`), so the
workers hand over 4x less memory (uint8) and a GPU does the arithmetic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from vit_core.training.data.randaugment import RandAugment

INTERPOLATIONS = ("bicubic", "bilinear")
"""Resampling filters ``--interpolation`` accepts (Pillow's, antialiased when shrinking)."""


def pil_filter(interpolation: str) -> int:
    """The Pillow resampling filter named ``interpolation``."""
    from PIL import Image

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    return {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[interpolation]


def to_tensor(image) -> torch.Tensor:
    """An 8-bit Pillow image as a uint8 ``(channels, height, width)`` tensor (one copy)."""
    import numpy as np

    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


@dataclass(frozen=True)
class EvalTransform:
    """Shorter side to ``size / crop_pct``, centre crop ``size`` (``(height, width)``)."""

    size: tuple[int, int]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        pil_filter(self.interpolation)

    def source_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The region of a ``width`` x ``height`` image that the crop shows, in that image's pixels."""
        scale = max(self.size) / self.crop_pct / min(width, height)
        crop_w, crop_h = min(width, self.size[1] / scale), min(height, self.size[0] / scale)
        left, top = (width - crop_w) / 2, (height - crop_h) / 2
        return left, top, left + crop_w, top + crop_h

    def image(self, image):  # a PIL image in and out
        """The resized, centre-cropped Pillow image."""
        height, width = self.size
        scale = max(height, width) / self.crop_pct / min(image.size)
        resized = (max(width, round(image.size[0] * scale)), max(height, round(image.size[1] * scale)))
        if resized != image.size:
            image = image.resize(resized, pil_filter(self.interpolation), reducing_gap=None)
        left, top = (resized[0] - width) // 2, (resized[1] - height) // 2
        return image.crop((left, top, left + width, top + height))

    def __call__(self, image) -> torch.Tensor:
        return to_tensor(self.image(image))


@dataclass(frozen=True)
class TrainTransform:
    """Random resized crop to ``size`` (or, with ``fixed``, that evaluation transform's resize and centre crop, so
    training sees what evaluation sees), horizontal flip with probability ``hflip``, then RandAugment if given."""

    size: tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    interpolation: str = "bicubic"
    rand_augment: RandAugment | None = None
    fixed: EvalTransform | None = None

    def crop_box(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """A box of ``scale`` of the area and ``ratio`` aspect (log-uniform) inside the image; after ten misses
        the largest centred box of an aspect within ``ratio``."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left, top = rng.randint(0, width - w), rng.randint(0, height - h)
                return left, top, left + w, top + h
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        w, h = (width, round(width / aspect)) if width / height <= aspect else (round(height * aspect), height)
        w, h = min(w, width), min(h, height)
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image, rng: random.Random | None = None) -> torch.Tensor:
        from PIL import Image

        rng = rng if rng is not None else random
        if self.fixed is not None:
            image = self.fixed.image(image)
        else:
            box = self.crop_box(*image.size, rng)
            size = (self.size[1], self.size[0])
            image = image.resize(size, pil_filter(self.interpolation), box=box, reducing_gap=None)
        if rng.random() < self.hflip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.rand_augment is not None:
            image = self.rand_augment(image, rng)
        return to_tensor(image)
