"""Batch-level steps after the loader, on the training device: normalisation, Mixup / CutMix, random erasing.

* Mixup (arXiv:1710.09412) blends each image with the batch's reversed order by ``lam ~ Beta(a, a)``;
* CutMix (arXiv:1905.04899) pastes a box of the reversed batch's image, ``lam`` = the area left unpasted;
* one of the two per batch (``switch_prob`` the chance of CutMix when both are on), as DeiT (arXiv:2012.12877);
* targets become ``lam * onehot(y) + (1 - lam) * onehot(y[::-1])``, label-smoothed, summing to 1; the loss is
  the soft-target cross-entropy (:func:`soft_cross_entropy`);
* random erasing (arXiv:1708.04896) replaces one box per image, with probability ``prob``, by normal noise.

All of it runs on whole batches with a ``torch.Generator``, so a seeded run draws the same boxes and weights.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5,)
"""Mean and std of images that are not RGB photos (and of the bundled digits): [0, 1] -> [-1, 1]."""


def default_mean_std(channels: int, photos: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet's mean/std for RGB photos, 0.5/0.5 per channel otherwise."""
    if photos and channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return HALF * channels, HALF * channels


def normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 ``(b, c, ...)`` images (or floats in [0, 1]) -> float32 ``(x / 255 - mean) / std`` per channel."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    shape = (1, -1) + (1,) * (images.dim() - 2)
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(shape)
    return (images - mean_t) / std_t


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy against per-row probability targets (Mixup/CutMix's soft labels)."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def smooth_one_hot(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """One-hot rows with ``smoothing`` spread evenly over all classes (each row sums to 1)."""
    off = smoothing / num_classes
    return torch.full((len(labels), num_classes), off, device=labels.device).scatter_(
        1, labels.view(-1, 1), 1.0 - smoothing + off
    )


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """A box of about ``1 - lam`` of the image, centred uniformly, clipped to the image: ``(top, bottom, left,
    right)``."""
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(height * cut), int(width * cut)
    cy = int(torch.randint(0, height, (1,), generator=generator))
    cx = int(torch.randint(0, width, (1,), generator=generator))
    return max(cy - ch // 2, 0), min(cy + ch // 2, height), max(cx - cw // 2, 0), min(cx + cw // 2, width)


@dataclass(frozen=True)
class Mixing:
    """Mixup / CutMix with label smoothing, one of the two per batch."""

    num_classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.switch_prob <= 1:
            raise ValueError(f"switch_prob must be in [0, 1], got {self.switch_prob}")

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(mixed images, soft targets)``; images ``(b, c, ..., h, w)`` floats, mixed with ``flip(0)``."""
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(torch.rand((), generator=generator)) < self.switch_prob
        )
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        lam = random.Random(seed).betavariate(alpha, alpha) if alpha > 0 else 1.0
        partner = images.flip(0)
        if use_cutmix:
            height, width = images.shape[-2:]
            top, bottom, left, right = cutmix_box(height, width, lam, generator)
            images = images.clone()
            images[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        else:
            images = images * lam + partner * (1.0 - lam)
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        return images, targets * lam + targets.flip(0) * (1.0 - lam)


@dataclass(frozen=True)
class RandomErasing:
    """With probability ``prob`` per image, one box of ``scale`` of the area and ``ratio`` aspect (log-uniform)
    becomes normal noise (``pixel`` mode, on normalised images)."""

    prob: float = 0.25
    scale: tuple[float, float] = (0.02, 1 / 3)
    ratio: tuple[float, float] = (0.3, 3.3)

    def __post_init__(self) -> None:
        if not 0 <= self.prob <= 1:
            raise ValueError(f"random erasing probability must be in [0, 1], got {self.prob}")

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        height, width = images.shape[-2:]
        images = images.clone()
        draws = torch.rand(len(images), 12, generator=generator).tolist()  # one host copy for the whole batch
        for index, (chance, *tries) in enumerate(draws):
            if chance >= self.prob:
                continue
            for attempt in range(0, 10, 2):
                area = height * width * (self.scale[0] + tries[attempt] * (self.scale[1] - self.scale[0]))
                log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
                aspect = math.exp(log_lo + tries[attempt + 1] * (log_hi - log_lo))
                h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
                if h < height and w < width:
                    top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
                    left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
                    box = images[index, ..., top : top + h, left : left + w]
                    box.copy_(torch.randn(box.shape, generator=generator).to(box))
                    break
        return images
