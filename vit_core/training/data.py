"""Datasets for ``vit train``: scikit-learn's bundled digits, an image folder, or synthetic images.

Every source yields in-memory tensors ``(train_x, train_y, test_x, test_y)`` already shaped for the
model: images ``(n, channels, height, width)`` or clips ``(n, channels, frames, height, width)``,
floats normalised to mean 0.5 / std 0.5 per channel.  The split is fixed (seeded), so two runs and
every rank of a distributed run see the same examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SOURCES = "digits, synthetic or folder:PATH"
TEST_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """A fixed train/test split; ``classes`` names the label indices."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _split(x: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...], name: str) -> Dataset:
    """Hold out ``TEST_FRACTION`` of each class (at least one example), always the same ones."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    test = torch.zeros(len(y), dtype=torch.bool)
    for label in range(len(classes)):
        members = torch.nonzero(y == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        test[members[: max(1, round(len(members) * TEST_FRACTION))]] = True
    return Dataset(x[~test], y[~test], x[test], y[test], classes, name)


def fit_images(images: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """(n, c, h, w) floats in [0, 1] -> resized (bilinear), ``channels`` channels, normalised to [-1, 1]."""
    if images.shape[-2:] != size:
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if images.shape[1] != channels:
        if images.shape[1] == 1:
            images = images.expand(-1, channels, -1, -1)
        else:  # colour to grey (or to another count): the channel mean, repeated
            images = images.mean(1, keepdim=True).expand(-1, channels, -1, -1)
    return ((images.clamp(0, 1) - 0.5) / 0.5).contiguous()


def animate(images: torch.Tensor, frames: int) -> torch.Tensor:
    """(n, c, h, w) -> (n, c, frames, h, w): each image drifts right and down by one pixel a frame
    (wrapping around), a moving digit."""
    clips = [torch.roll(images, shifts=(t, t), dims=(-2, -1)) for t in range(frames)]
    return torch.stack(clips, dim=2)


def digits(channels: int, size: tuple[int, int]) -> Dataset:
    """scikit-learn's bundled 8x8 grey digits (1797 images, no download), upsampled to ``size``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("--data digits needs scikit-learn: pip install 'vit-core[train]'") from None
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    return _split(fit_images(x, channels, size), y, tuple(str(i) for i in range(10)), "digits")


def synthetic(channels: int, size: tuple[int, int], *, num_classes: int = 4, per_class: int = 32) -> Dataset:
    """Noise with a bright vertical band whose position is the class: learnable in a few steps (smoke tests).

    (The band, not the brightness: the patch embedding's LayerNorm removes a uniform shift.)"""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    x = 0.3 + 0.1 * torch.randn(len(y), 1, *size, generator=generator)
    width = size[1]
    for label in range(num_classes):
        start, stop = label * width // num_classes, (label + 1) * width // num_classes
        x[y == label, :, :, start:stop] += 0.5
    return _split(fit_images(x, channels, size), y, tuple(f"class-{i}" for i in range(num_classes)), "synthetic")


def folder(path: str | Path, channels: int, size: tuple[int, int]) -> Dataset:
    """One sub-folder per class of image files (read with Pillow), resized and normalised on tensors."""
    try:
        import numpy as np
        from PIL import Image
    except ImportError:
        raise ImportError("--data folder:PATH needs Pillow: pip install 'vit-core[train]'") from None
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"--data folder:{path}: {str(root)!r} is not a folder (expected one sub-folder per class)")
    found = {
        d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(root.iterdir())
        if d.is_dir()
    }
    found = {name: files for name, files in found.items() if files}
    if not found:
        raise ValueError(
            f"--data folder:{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in any sub-folder of {str(root)!r}; "
            "expected one sub-folder of images per class"
        )
    if len(found) < 2:
        raise ValueError(
            f"--data folder:{path}: only one class ({next(iter(found))!r}) has images; a classifier needs at least two"
        )
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for label, files in enumerate(found.values()):
        for file in files:
            with Image.open(file) as image:
                array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
            tensor = torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)
            images.append(fit_images(tensor.unsqueeze(0), channels, size)[0])
            labels.append(label)
    return _split(torch.stack(images), torch.tensor(labels), tuple(found), f"folder:{path}")


def load(source: str, input_kind: str, shape: tuple[int, ...]) -> Dataset:
    """The dataset ``source`` ("digits", "synthetic" or "folder:PATH") for one sample of ``shape``:
    ``(c, h, w)`` images, or ``(c, frames, h, w)`` clips when ``input_kind`` is ``"video"``."""
    if input_kind not in ("image", "image-list", "video"):
        raise ValueError(f"vit train feeds images or clips; input kind {input_kind!r} takes neither")
    channels, size = shape[0], (shape[-2], shape[-1])
    if source == "digits":
        data = digits(channels, size)
    elif source == "synthetic":
        data = synthetic(channels, size)
    elif source.startswith("folder:"):
        data = folder(source.removeprefix("folder:"), channels, size)
    else:
        raise ValueError(f"--data {source!r}: expected {SOURCES}")
    if input_kind != "video":
        return data
    frames = shape[1]
    return Dataset(
        animate(data.train_x, frames), data.train_y, animate(data.test_x, frames), data.test_y, data.classes, data.name
    )
