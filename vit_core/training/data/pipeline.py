"""The data side of ``vit train`` / ``vit eval``: a source string becomes loaders and the batch steps.

Sources: ``digits`` (bundled), ``synthetic``, ``folder:PATH`` (one sub-folder per class, or the ImageNet
``train/`` + ``val/`` layout) and ``wds:PATTERN`` (WebDataset shards).  Files are listed, never decoded up front;
images are decoded and augmented in loader workers as uint8, normalised and mixed on batches.  The preprocessing
is described by a ``pretrained_cfg`` (timm's vocabulary) that the checkpoint records.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler, IterableDataset

from vit_core.training.data.augment import Augmentation
from vit_core.training.data.batch import (
    Mixing,
    RandomErasing,
    default_mean_std,
    normalize,
    soft_cross_entropy,
)
from vit_core.training.data.datasets import ArrayImages, ImageFiles, LoaderSettings, default_workers, unreadable
from vit_core.training.data.decode import mode_for
from vit_core.training.data.folders import DataSourceError, imagenet_splits, list_folder, stratified_split
from vit_core.training.data.randaugment import RandAugment
from vit_core.training.data.shards import ShardSource
from vit_core.training.data.transforms import EvalTransform, TrainTransform

SOURCES = "digits, synthetic, folder:PATH or wds:PATTERN"
SPLIT_SEED = 0


@dataclass(frozen=True)
class DataSettings:
    """Everything ``vit train`` is told about its data (``augment=None``: the source's default)."""

    source: str = "digits"
    val_source: str | None = None
    val_fraction: float = 0.1
    workers: int | None = None
    augment: Augmentation | None = None
    skip_bad_images: bool = False
    interpolation: str = "bicubic"
    crop_pct: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def photos(self) -> bool:
        """Whether the source holds the user's photos (folders, shards) rather than the bundled grey data."""
        return self.source.startswith(("folder:", "wds:"))

    def augmentation(self) -> Augmentation:
        return self.augment if self.augment is not None else Augmentation.preset("basic" if self.photos else "none")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "val_source": self.val_source,
            "val_fraction": self.val_fraction,
            "augment": self.augmentation().to_json(),
            "skip_bad_images": self.skip_bad_images,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "mean": self.mean,
            "std": self.std,
        }


@dataclass
class BatchSteps:
    """What happens to a loader's uint8 batch on the device: to float, normalised, optionally mixed and erased,
    and for video models animated into clips of ``frames``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    frames: int | None = None
    mixing: Mixing | None = None
    erasing: RandomErasing | None = None
    label_smoothing: float = 0.0

    def inputs(self, images: Tensor) -> Tensor:
        x = normalize(images, self.mean, self.std)
        return animate(x, self.frames) if self.frames else x

    def training(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)``: targets are class indices, or soft rows when mixing is on."""
        x = normalize(images, self.mean, self.std)
        targets: Tensor = labels
        if self.mixing is not None and len(labels) > 1:
            x, targets = self.mixing(x, labels, generator)
        if self.erasing is not None:
            x = self.erasing(x, generator)
        return (animate(x, self.frames) if self.frames else x), targets

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if targets.dim() == 2:
            return soft_cross_entropy(logits, targets)
        return torch.nn.functional.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


def animate(images: Tensor, frames: int) -> Tensor:
    """(n, c, h, w) -> (n, c, frames, h, w): each image drifts right and down by one pixel a frame (wrapping
    around), a moving picture for the video models."""
    return torch.stack([torch.roll(images, shifts=(t, t), dims=(-2, -1)) for t in range(frames)], dim=2)


@dataclass
class Data:
    """Loaders and the batch steps of one run; ``pretrained_cfg`` describes the evaluation preprocessing."""

    name: str
    classes: tuple[str, ...]
    train_set: Any
    val_set: Any
    train_size: int
    val_size: int
    steps: BatchSteps
    pretrained_cfg: dict[str, Any]
    workers: int
    notes: list[str] = field(default_factory=list)
    seed: int = 0
    skip_bad_images: bool = False
    _stream: Any = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def streamed(self) -> bool:
        return isinstance(self.train_set, IterableDataset)

    def batches_per_epoch(self, global_batch: int) -> int:
        """Optimizer steps of one epoch (a streamed source: its samples over the global batch, at least one)."""
        if self.streamed:
            return max(1, self.train_size // global_batch)
        return -(-self.train_size // global_batch)

    def epoch_batches(
        self, epoch: int, skip: int, batch_size: int, rank: int, world: int, pin_memory: bool = False
    ) -> Iterator[tuple[Tensor, Tensor, tuple[str, ...]]]:
        """This rank's ``(images, labels, skipped files)`` batches of ``epoch``, the first ``skip`` left out
        (a resumed run starts mid-epoch without reading them).  A folder: a ``DistributedSampler`` order, the
        same global batches for any number of processes.  Shards: the next batches of this rank's endless
        stream, as many as an epoch has."""
        settings = LoaderSettings(batch_size, self.workers, pin_memory)
        if self.streamed:
            if self._stream is None:
                self._stream = _endless(settings.loader(self.train_set, drop_last=True), self.name, batch_size)
            return itertools.islice(self._stream, max(0, self.batches_per_epoch(batch_size * world) - skip))
        sampler = DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        sampler.set_epoch(epoch)
        order = list(sampler)[skip * batch_size :]
        return iter(settings.loader(self.train_set, order))

    def unreadable(self, bad: tuple[tuple[str, str], ...]) -> list[str]:
        """A batch's unreadable files: skipped (their paths returned) with ``--skip-bad-images``, else an error
        naming the first."""
        return unreadable(bad, self.skip_bad_images)

    def val_batches(self, batch_size: int, pin_memory: bool = False) -> Iterator[tuple[Tensor, Tensor, tuple]]:
        """Every held-out batch, in order (every rank reads all of them)."""
        return iter(LoaderSettings(batch_size, self.workers, pin_memory).loader(self.val_set))


def _endless(loader: Any, name: str, batch_size: int) -> Iterator[Any]:
    """``loader``'s batches, pass after pass (a stream of shards has no end of epoch of its own)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise DataSourceError(
                f"--data {name}: this process's shards hold fewer than one batch ({batch_size} images per process and "
                "loader worker); write more, smaller shards (vit data shards --shard-size) or lower --batch-size"
            )


def _digits() -> tuple[np.ndarray, list[int], tuple[str, ...]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("--data digits needs scikit-learn: pip install 'vit-core[train]'") from None
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, [int(t) for t in bunch.target], tuple(str(i) for i in range(10))


def _synthetic(size: tuple[int, int], num_classes: int = 4, per_class: int = 64) -> tuple[np.ndarray, list, tuple]:
    """Noise with a bright vertical band whose position is the class: learnable in a few steps (smoke tests).
    (The band, not the brightness: the patch embedding's LayerNorm removes a uniform shift.)"""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    x = 0.3 + 0.1 * torch.randn(len(labels), *size, generator=generator)
    for label in range(num_classes):
        start, stop = label * size[1] // num_classes, (label + 1) * size[1] // num_classes
        x[labels == label, :, start:stop] += 0.5
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return images, labels.tolist(), tuple(f"class-{i}" for i in range(num_classes))


def _transforms(settings: DataSettings, size: tuple[int, int], crop_pct: float) -> tuple[Any, Any]:
    augment = settings.augmentation()
    evaluation = EvalTransform(size, crop_pct, settings.interpolation)
    if not augment.random_crop and not augment.hflip and augment.rand_augment is None:
        return evaluation, evaluation
    rand_augment = RandAugment(magnitude=augment.rand_augment) if augment.rand_augment is not None else None
    if augment.random_crop:
        training = TrainTransform(
            size, hflip=augment.hflip, interpolation=settings.interpolation, rand_augment=rand_augment
        )
    else:  # flip / RandAugment on the evaluation crop: training sees what evaluation sees
        training = TrainTransform(size, hflip=augment.hflip, rand_augment=rand_augment, fixed=evaluation)
    return training, evaluation


def load(
    settings: DataSettings, input_kind: str, shape: tuple[int, ...], *, seed: int = 0, classes: tuple | None = None
) -> Data:
    """The data ``settings`` names for one sample of ``shape`` (``(c, h, w)`` images, ``(c, frames, h, w)`` clips
    when ``input_kind`` is ``"video"``).  ``classes`` (a trained model's label names) maps the data's classes by
    name (evaluation of a checkpoint)."""
    if input_kind not in ("image", "image-list", "video"):
        raise DataSourceError(f"vit train feeds images or clips; input kind {input_kind!r} takes neither")
    channels, size = shape[0], (shape[-2], shape[-1])
    mode = mode_for(channels)
    source = settings.source
    crop_pct = settings.crop_pct if settings.crop_pct is not None else (0.875 if settings.photos else 1.0)
    training, evaluation = _transforms(settings, size, crop_pct)
    notes: list[str] = []
    workers = settings.workers
    if workers is not None and workers < 0:
        raise DataSourceError(f"--workers must be >= 0, got {workers}")

    def split(items: Any, labels: list[int], make: Any) -> tuple[Any, Any, int, int]:
        if settings.val_source is not None:
            val = _open(settings.val_source, "--val-data", names, evaluation, mode, settings, seed)
            return make(items, labels, training), val[0], len(labels), val[1]
        train_idx, val_idx = stratified_split(labels, settings.val_fraction, SPLIT_SEED)
        pick = (lambda idx: items[idx]) if isinstance(items, np.ndarray) else (lambda idx: [items[i] for i in idx])
        return (
            make(pick(train_idx), [labels[i] for i in train_idx], training),
            make(pick(val_idx), [labels[i] for i in val_idx], evaluation),
            len(train_idx),
            len(val_idx),
        )

    if source in ("digits", "synthetic"):
        images, labels, names = _digits() if source == "digits" else _synthetic(size)
        train_set, val_set, n_train, n_val = split(images, labels, lambda x, y, t: ArrayImages(x, y, t, mode))
        default = 0
    elif source.startswith("folder:"):
        root = Path(source.removeprefix("folder:")).expanduser()
        layout = imagenet_splits(root)
        listing = list_folder(layout[0] if layout else root, f"--data {source}", classes)
        names = listing.classes
        notes += [f"class folder {name!r} holds no image (kept as class {names.index(name)})" for name in listing.empty]
        make = lambda x, y, t: ImageFiles(x, y, t, mode)  # noqa: E731
        if layout and settings.val_source is None:
            val_listing = list_folder(layout[1], f"--data {source} ({layout[1].name}/)", names)
            train_set, val_set = (
                make(listing.files, listing.labels, training),
                make(val_listing.files, val_listing.labels, evaluation),
            )
            n_train, n_val = len(listing.files), len(val_listing.files)
        else:
            train_set, val_set, n_train, n_val = split(listing.files, listing.labels, make)
        default = default_workers()
    elif source.startswith("wds:"):
        shards = ShardSource.open(source.removeprefix("wds:"), "--data")
        names = classes if classes is not None else shards.classes
        train_set = shards.dataset(training, mode, names, train=True, seed=seed)
        n_train = shards.samples
        if settings.val_source is None:
            raise DataSourceError(f"--data {source}: shards hold no held-out split; name one with --val-data")
        val_set, n_val = _open(settings.val_source, "--val-data", names, evaluation, mode, settings, seed)
        default = default_workers()
    else:
        raise DataSourceError(f"--data {source!r}: expected {SOURCES}")
    if len(names) < 2 and classes is None:
        raise DataSourceError(f"--data {source}: only one class ({names[0]!r}); a classifier needs at least two")
    augment = settings.augmentation()
    mean, std = default_mean_std(channels, settings.photos)
    mean, std = settings.mean or mean, settings.std or std
    mixing = None
    if augment.mixup > 0 or augment.cutmix > 0:
        mixing = Mixing(len(names), augment.mixup, augment.cutmix, augment.mix_switch, augment.label_smoothing)
    steps = BatchSteps(
        tuple(mean),
        tuple(std),
        shape[1] if input_kind == "video" else None,
        mixing,
        RandomErasing(augment.erase) if augment.erase > 0 else None,
        augment.label_smoothing,
    )
    pretrained_cfg = {
        "input_size": list(shape),
        "mean": list(mean),
        "std": list(std),
        "interpolation": settings.interpolation,
        "crop_pct": crop_pct,
        "label_names": list(names),
        "num_classes": len(names),
    }
    return Data(
        source,
        tuple(names),
        train_set,
        val_set,
        n_train,
        n_val,
        steps,
        pretrained_cfg,
        default if workers is None else workers,
        notes,
        seed,
        settings.skip_bad_images,
    )


def _open(
    source: str, option: str, classes: tuple, transform: Any, mode: str, settings: DataSettings, seed: int
) -> tuple[Any, int]:
    """An evaluation set named on its own (``--val-data``, ``vit eval --data``): ``(dataset, size)``, its classes
    mapped onto ``classes`` by name.  A folder in the ImageNet layout gives its ``val/`` split."""
    if source.startswith("folder:"):
        root = Path(source.removeprefix("folder:")).expanduser()
        layout = imagenet_splits(root)
        listing = list_folder(layout[1] if layout else root, f"{option} {source}", classes)
        return ImageFiles(listing.files, listing.labels, transform, mode), len(listing.files)
    if source.startswith("wds:"):
        shards = ShardSource.open(source.removeprefix("wds:"), option)
        dataset = shards.dataset(transform, mode, classes, train=False, seed=seed)
        return dataset, shards.samples
    raise DataSourceError(f"{option} {source!r}: expected folder:PATH or wds:PATTERN")


def labelled(settings: DataSettings, input_kind: str, shape: tuple[int, ...], classes: tuple[str, ...]) -> Data:
    """Evaluation data only (``vit eval``): ``settings.source``'s images (a folder's ``val/`` split in the ImageNet
    layout; the held-out split of ``digits``/``synthetic``) with their classes mapped by name onto ``classes``."""
    if settings.source in ("digits", "synthetic"):
        return load(settings, input_kind, shape, classes=classes)
    channels, size = shape[0], (shape[-2], shape[-1])
    crop_pct = settings.crop_pct if settings.crop_pct is not None else 0.875
    evaluation = EvalTransform(size, crop_pct, settings.interpolation)
    val_set, n_val = _open(settings.source, "--data", classes, evaluation, mode_for(channels), settings, 0)
    mean, std = default_mean_std(channels, True)
    steps = BatchSteps(
        tuple(settings.mean or mean), tuple(settings.std or std), shape[1] if input_kind == "video" else None
    )
    workers = default_workers() if settings.workers is None else settings.workers
    return Data(
        settings.source, classes, None, val_set, 0, n_val, steps, {}, workers, skip_bad_images=settings.skip_bad_images
    )
