"""DINO's multi-crop augmentations on batched image tensors, without torchvision.

Every image of a batch draws its own parameters (crop box, flip, jitter factors, blur width), so
a whole batch is augmented in a few tensor operations: crops and flips are one ``grid_sample``
with a per-image affine map, the blur is one grouped convolution with per-image kernels.
Inputs are ``(batch, channels, height, width)`` floats in ``[0, 1]``; colour operations clamp to
that range (as torchvision's do).  Saturation, hue and grey-scale need RGB: with other channel
counts they are skipped (brightness and contrast still apply).

The default recipe is DINO's (Caron et al., arXiv 2104.14294, after BYOL, arXiv 2006.07733):
global views ``RandomResizedCrop(scale=(0.4, 1))``, flip, colour jitter ``(0.4, 0.4, 0.2, 0.1)``
with probability 0.8, grey-scale 0.2, Gaussian blur (1.0 on the first view, 0.1 on the second),
solarize 0.2 (second view only); local views ``RandomResizedCrop(scale=(0.05, 0.4))`` and blur
0.5; then ImageNet mean / std normalisation for RGB.  Colour jitter applies its four factors
in a fixed order (brightness, contrast, saturation, hue), torchvision in a random one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.validation import as_tuple, check_positive_int, check_probability
from vit_ssl.randomness import RankedGenerator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)

Augment = Callable[[Tensor], Tensor]


def check_scale(name: str, value: Any) -> tuple[float, float]:
    """A crop-area range ``(low, high)`` with ``0 < low <= high <= 1``."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise TypeError(f"{name} must be a pair (low, high) of floats, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {value!r}")
    return low, high


def check_images(name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point (batch, channels, height, width) tensor, got {shape}")
    return x


def _uniform(generator: RankedGenerator, low: float, high: float, batch: int, x: Tensor) -> Tensor:
    return low + (high - low) * generator.rand((batch,), x.device).to(x.dtype)


def _chosen(generator: RankedGenerator, prob: float, batch: int, x: Tensor) -> Tensor:
    """``(batch, 1, 1, 1)`` booleans, each ``True`` with probability ``prob``."""
    return (generator.rand((batch,), x.device) < prob).view(batch, 1, 1, 1)


def grey(x: Tensor) -> Tensor:
    """Luma ``(batch, 1, h, w)`` of RGB images (the channel mean otherwise)."""
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    r, g, b = x.split(1, dim=1)
    return r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]  # Python scalars: no constant tensor per call


def random_resized_crop(
    x: Tensor,
    size: Sequence[int],
    scale: tuple[float, float],
    *,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    generator: RankedGenerator,
) -> Tensor:
    """Crop a box of random area (``scale`` of the image) and aspect ratio from each image, resize it to
    ``size`` (bilinear) and flip it horizontally with probability ``flip_prob``.  A box that would
    not fit is clipped to the image side (torchvision retries and falls back to a centre crop)."""
    b, c, h, w = x.shape
    area = _uniform(generator, *scale, b, x)
    aspect = _uniform(generator, math.log(ratio[0]), math.log(ratio[1]), b, x).exp()
    width = (area * aspect * h / w).sqrt().clamp(max=1.0)  # box side as a fraction of the image side
    height = (area * w / (aspect * h)).sqrt().clamp(max=1.0)
    centre_x = (2 * generator.rand((b,), x.device).to(x.dtype) - 1) * (1 - width)
    centre_y = (2 * generator.rand((b,), x.device).to(x.dtype) - 1) * (1 - height)
    flip = 1 - 2 * _chosen(generator, flip_prob, b, x).view(b).to(x.dtype)
    theta = x.new_zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta, [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = x.unbind(dim=1)
    value, _ = x.max(dim=1)
    delta = value - x.min(dim=1).values
    saturation = torch.where(value > 0, delta / value.clamp_min(1e-12), torch.zeros_like(value))
    d = delta.clamp_min(1e-12)
    hue = torch.where(value == r, (g - b) / d, torch.where(value == g, 2 + (b - r) / d, 4 + (r - g) / d))
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    return hue, saturation, value


def _hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    sector = torch.floor(hue * 6)
    fraction = hue * 6 - sector
    sector = sector.long() % 6
    p = value * (1 - saturation)
    q = value * (1 - saturation * fraction)
    t = value * (1 - saturation * (1 - fraction))
    table = torch.stack((value, q, p, p, t, value, t, value, value, q, p, p, p, p, t, value, value, q), dim=1)
    table = table.view(table.shape[0], 3, 6, *table.shape[2:])
    index = sector.unsqueeze(1).unsqueeze(2).expand(-1, 3, 1, *sector.shape[1:])
    return table.gather(2, index).squeeze(2)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of RGB images by ``shift`` ``(batch,)`` turns (in ``[-0.5, 0.5]``)."""
    hue, saturation, value = _rgb_to_hsv(x)
    return _hsv_to_rgb((hue + shift.view(-1, 1, 1)) % 1.0, saturation, value)


def colour_jitter(
    x: Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    *,
    prob: float,
    generator: RankedGenerator,
) -> Tensor:
    """torchvision's ``ColorJitter`` factors, drawn per image, applied with probability ``prob``."""
    b = x.shape[0]
    applied = _chosen(generator, prob, b, x)

    def factor(strength: float) -> Tensor:
        drawn = _uniform(generator, max(0.0, 1 - strength), 1 + strength, b, x).view(b, 1, 1, 1)
        return torch.where(applied, drawn, torch.ones_like(drawn))

    x = (x * factor(brightness)).clamp(0, 1)
    f = factor(contrast)
    x = (f * x + (1 - f) * grey(x).mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    if x.shape[1] == 3:
        f = factor(saturation)
        x = (f * x + (1 - f) * grey(x)).clamp(0, 1)
        if hue > 0:
            shift = _uniform(generator, -hue, hue, b, x) * applied.view(b).to(x.dtype)
            x = adjust_hue(x, shift)
    return x


def random_grey(x: Tensor, prob: float, *, generator: RankedGenerator) -> Tensor:
    """Replace RGB images by their luma (in every channel) with probability ``prob``."""
    if x.shape[1] != 3:
        return x
    return torch.where(_chosen(generator, prob, x.shape[0], x), grey(x).expand_as(x), x)


def blur_kernel_size(size: int) -> int:
    """An odd kernel of about a tenth of the image side, at least 3 (DINO: 23 for 224 pixels)."""
    k = max(3, int(0.1 * size))
    return k if k % 2 else k + 1


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur each image with its own Gaussian ``sigma`` ``(batch,)`` (separable, reflected borders)."""
    b, c, h, w = x.shape
    kernel_size = min(kernel_size, 2 * (min(h, w) // 2) - 1) if min(h, w) > 1 else 1
    if kernel_size < 3:
        return x
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma.view(b, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (b * c, k)
    y = F.pad(x.reshape(1, b * c, h, w), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)
    y = F.conv2d(y, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)
    return y.view(b, c, h, w)


def random_blur(
    x: Tensor, prob: float, sigma: tuple[float, float], kernel_size: int, *, generator: RankedGenerator
) -> Tensor:
    b = x.shape[0]
    applied = _chosen(generator, prob, b, x)
    blurred = gaussian_blur(x, _uniform(generator, *sigma, b, x), kernel_size)
    return torch.where(applied, blurred, x)


def random_solarize(x: Tensor, prob: float, threshold: float = 0.5, *, generator: RankedGenerator) -> Tensor:
    """Invert the pixels at or above ``threshold`` with probability ``prob`` per image."""
    solarized = torch.where(x >= threshold, 1 - x, x)
    return torch.where(_chosen(generator, prob, x.shape[0], x), solarized, x)


class Photometric(nn.Module):
    """Colour jitter, grey-scale, blur, solarize and normalisation, each with its own probability.

    Args:
        jitter: ``(brightness, contrast, saturation, hue)`` strengths.
        jitter_prob, grey_prob, blur_prob, solarize_prob: probability per image of each step.
        blur_sigma: range of the blur's standard deviation, in pixels.
        mean, std: per-channel normalisation applied last; ``None`` skips it.
    """

    def __init__(
        self,
        *,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        jitter_prob: float = 0.8,
        grey_prob: float = 0.2,
        blur_prob: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize_prob: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if len(jitter) != 4 or any(not isinstance(v, (int, float)) or v < 0 for v in jitter):
            raise ValueError(f"jitter must be four non-negative strengths, got {jitter!r}")
        if not 0 <= jitter[3] <= 0.5:
            raise ValueError(f"the hue strength (jitter[3]) must be in [0, 0.5], got {jitter[3]!r}")
        self.jitter = tuple(float(v) for v in jitter)
        self.jitter_prob = check_probability("jitter_prob", jitter_prob, allow_one=True)
        self.grey_prob = check_probability("grey_prob", grey_prob, allow_one=True)
        self.blur_prob = check_probability("blur_prob", blur_prob, allow_one=True)
        self.solarize_prob = check_probability("solarize_prob", solarize_prob, allow_one=True)
        if not (len(blur_sigma) == 2 and 0 < blur_sigma[0] <= blur_sigma[1]):
            raise ValueError(f"blur_sigma must be a range (low, high) with 0 < low <= high, got {blur_sigma!r}")
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {std!r}")
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        # the normalisation as buffers (they follow the module to its device), not per-call constants
        self.register_buffer("mean_values", _channels(self.mean), persistent=False)
        self.register_buffer("std_values", _channels(self.std), persistent=False)
        self.generator = RankedGenerator()

    def forward(self, x: Tensor) -> Tensor:
        check_images("x", x)
        g = self.generator
        x = colour_jitter(x, *self.jitter, prob=self.jitter_prob, generator=g)
        x = random_grey(x, self.grey_prob, generator=g)
        if self.blur_prob > 0:
            x = random_blur(x, self.blur_prob, self.blur_sigma, blur_kernel_size(max(x.shape[-2:])), generator=g)
        if self.solarize_prob > 0:
            x = random_solarize(x, self.solarize_prob, generator=g)
        if self.mean is not None:
            if len(self.mean) != x.shape[1]:
                raise ValueError(f"mean/std have {len(self.mean)} channels, the images {x.shape[1]}")
            x = (x - self.mean_values.to(x.dtype)) / self.std_values.to(x.dtype)
        return x


def _channels(values: tuple[float, ...] | None) -> Tensor | None:
    """Per-channel ``values`` as a ``(1, channels, 1, 1)`` tensor, or ``None``."""
    return None if values is None else torch.tensor(values).view(1, -1, 1, 1)


def dino_photometric(view: str, channels: int = 3) -> Photometric:
    """DINO's colour pipeline for ``view`` in ``"global1"``, ``"global2"``, ``"local"``."""
    blur = {"global1": 1.0, "global2": 0.1, "local": 0.5}[view]
    rgb = channels == 3
    return Photometric(
        blur_prob=blur,
        solarize_prob=0.2 if view == "global2" else 0.0,
        mean=IMAGENET_MEAN if rgb else None,
        std=IMAGENET_STD if rgb else None,
    )


class MultiCrop(nn.Module):
    """Two global views and ``num_local_crops`` local views of a batch, each randomly cropped,
    flipped and colour-augmented (DINO's multi-crop, arXiv 2104.14294).

    Args:
        image_size: side (or ``(height, width)``) of the global views.
        global_scale, local_scale: area ranges of the global and local crops.
        num_local_crops: local views per image (DINO uses 6 to 10; 0 disables them).
        local_image_size: side of the local views (DINO: 96 against 224); ``None`` means
            ``image_size``, which every encoder can take.
        augment_global1, augment_global2, augment_local: colour pipelines applied after cropping;
            ``None`` uses DINO's (:func:`dino_photometric`) for ``channels``.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        *,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
        num_local_crops: int = 2,
        local_image_size: int | tuple[int, int] | None = None,
        augment_global1: Augment | None = None,
        augment_global2: Augment | None = None,
        augment_local: Augment | None = None,
        channels: int = 3,
    ) -> None:
        super().__init__()
        self.image_size = as_tuple("image_size", image_size)
        self.local_image_size = (
            self.image_size if local_image_size is None else as_tuple("local_image_size", local_image_size)
        )
        self.global_scale = check_scale("global_scale", global_scale)
        self.local_scale = check_scale("local_scale", local_scale)
        if isinstance(num_local_crops, bool) or not isinstance(num_local_crops, int) or num_local_crops < 0:
            raise ValueError(f"num_local_crops must be a non-negative int, got {num_local_crops!r}")
        self.num_local_crops = num_local_crops
        check_positive_int("channels", channels)
        for name, fn in (
            ("augment_fn", augment_global1),
            ("augment_fn2", augment_global2),
            ("augment_local", augment_local),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a callable on (batch, channels, height, width) tensors, got {fn!r}")
        self.augment_global1 = augment_global1 if augment_global1 is not None else dino_photometric("global1", channels)
        self.augment_global2 = augment_global2 if augment_global2 is not None else dino_photometric("global2", channels)
        self.augment_local = augment_local if augment_local is not None else dino_photometric("local", channels)
        self.generator = RankedGenerator()

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``(global_views, local_views)``: 2 and ``num_local_crops`` tensors of the batch's size.

        Runs outside autocast: augmentation is preprocessing, done in the images' own precision."""
        check_images("x", x)
        if not torch.amp.is_autocast_available(x.device.type):  # e.g. meta: nothing to switch off
            return self._views(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._views(x)

    def _views(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        g = self.generator
        crops = [random_resized_crop(x, self.image_size, self.global_scale, generator=g) for _ in range(2)]
        global_views = [self.augment_global1(crops[0]), self.augment_global2(crops[1])]
        local_views = [
            self.augment_local(random_resized_crop(x, self.local_image_size, self.local_scale, generator=g))
            for _ in range(self.num_local_crops)
        ]
        return global_views, local_views
