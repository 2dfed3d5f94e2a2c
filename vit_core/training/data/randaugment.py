"""RandAugment (Cubuk et al., arXiv:1909.13719) on Pillow images, with DeiT's settings (arXiv:2012.12877).

Each image gets ``num_ops`` operations drawn uniformly from :data:`OPERATIONS`, each applied with probability
``prob`` at magnitude ``magnitude`` out of 10, the magnitude drawn per operation from a normal of standard
deviation ``magnitude_std`` around it when that is positive ("magnitude noise").  The magnitude only ever
increases the distortion: posterize keeps fewer bits, solarize lowers its threshold, enhancements move away from
the identity in a random direction, geometric ops rotate/shear/translate further in a random direction.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

MAX_MAGNITUDE = 10.0
FILL = (128, 128, 128)
"""Grey that geometric operations leave where the image moved away."""


def _signed(value: float, rng: random.Random) -> float:
    return value if rng.random() < 0.5 else -value


def _affine(image, matrix: tuple[float, ...]):
    from PIL import Image

    fill = FILL[0] if image.mode == "L" else FILL
    return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=fill)


def _auto_contrast(image, level: float, rng: random.Random):
    from PIL import ImageOps

    return ImageOps.autocontrast(image)


def _equalize(image, level: float, rng: random.Random):
    from PIL import ImageOps

    return ImageOps.equalize(image)


def _invert(image, level: float, rng: random.Random):
    from PIL import ImageOps

    return ImageOps.invert(image)


def _rotate(image, level: float, rng: random.Random):
    fill = FILL[0] if image.mode == "L" else FILL
    return image.rotate(_signed(30.0 * level, rng), resample=3, fillcolor=fill)  # 3: bicubic


def _posterize(image, level: float, rng: random.Random):
    from PIL import ImageOps

    return ImageOps.posterize(image, max(1, 8 - round(4 * level)))


def _solarize(image, level: float, rng: random.Random):
    from PIL import ImageOps

    return ImageOps.solarize(image, 256 - round(256 * level))


def _solarize_add(image, level: float, rng: random.Random):
    add = round(110 * level)
    lut = [min(255, i + add) if i < 128 else i for i in range(256)] * len(image.getbands())
    return image.point(lut)


def _enhance(kind: str) -> Callable:
    def apply(image, level: float, rng: random.Random):
        from PIL import ImageEnhance

        return getattr(ImageEnhance, kind)(image).enhance(max(0.1, 1.0 + _signed(0.9 * level, rng)))

    apply.__name__ = kind.lower()
    return apply


def _shear(axis: int) -> Callable:
    def apply(image, level: float, rng: random.Random):
        shear = _signed(0.3 * level, rng)
        return _affine(image, (1, shear, 0, 0, 1, 0) if axis == 0 else (1, 0, 0, shear, 1, 0))

    apply.__name__ = f"shear_{'xy'[axis]}"
    return apply


def _translate(axis: int) -> Callable:
    def apply(image, level: float, rng: random.Random):
        shift = _signed(0.45 * level, rng) * image.size[axis]
        return _affine(image, (1, 0, shift, 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1, shift))

    apply.__name__ = f"translate_{'xy'[axis]}"
    return apply


OPERATIONS: tuple[Callable, ...] = (
    _auto_contrast,
    _equalize,
    _invert,
    _rotate,
    _posterize,
    _solarize,
    _solarize_add,
    _enhance("Color"),
    _enhance("Contrast"),
    _enhance("Brightness"),
    _enhance("Sharpness"),
    _shear(0),
    _shear(1),
    _translate(0),
    _translate(1),
)
"""The operations RandAugment draws from; each takes ``(image, level in [0, 1], rng)``."""


@dataclass(frozen=True)
class RandAugment:
    """``num_ops`` random operations at ``magnitude`` (0-10, with ``magnitude_std`` noise), each with ``prob``."""

    num_ops: int = 2
    magnitude: float = 9.0
    magnitude_std: float = 0.5
    prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.magnitude <= MAX_MAGNITUDE:
            raise ValueError(f"RandAugment magnitude must be in [0, {MAX_MAGNITUDE:g}], got {self.magnitude}")
        if self.num_ops < 0:
            raise ValueError(f"RandAugment num_ops must be >= 0, got {self.num_ops}")

    def __call__(self, image, rng: random.Random):
        for operation in rng.choices(OPERATIONS, k=self.num_ops):
            if rng.random() >= self.prob:
                continue
            magnitude = self.magnitude
            if self.magnitude_std > 0:
                magnitude = rng.gauss(magnitude, self.magnitude_std)
            image = operation(image, min(max(magnitude, 0.0), MAX_MAGNITUDE) / MAX_MAGNITUDE, rng)
        return image
