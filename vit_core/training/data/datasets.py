"""Map-style datasets that hold paths (or small arrays), never decoded pixels, and the loader around them.

Each item is decoded and transformed when asked for, in a DataLoader worker; a batch is uint8
``(b, c, h, w)`` images, int64 labels and the files that could not be read, as ``(path, reason)`` pairs.  A worker
never raises for a bad file: the main process decides (stop with the file's name, or skip it), so the message
is the file's, not a worker's traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vit_core.training.data.decode import BadImageError, decode

Item = tuple[torch.Tensor | None, int, tuple[str, str] | None]
"""``(image, label, None)``, or ``(None, label, (path, reason))`` for a file that could not be read."""
Batch = tuple[torch.Tensor, torch.Tensor, tuple[tuple[str, str], ...]]


class ImageFiles(Dataset):
    """Image files and their labels.  Paths are kept as one packed byte array (a few bytes per image: the
    object's size does not grow with the pixels), decoded with Pillow on access."""

    def __init__(
        self,
        files: Sequence[str],
        labels: Sequence[int],
        transform: Callable,
        mode: str,
    ) -> None:
        self.paths = np.array([os.fsencode(f) for f in files], dtype=np.bytes_)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform, self.mode = transform, mode

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Item:
        path = os.fsdecode(self.paths[index])
        label = int(self.labels[index])
        try:
            image = decode(path, self.mode)
        except BadImageError as exc:
            return None, label, (exc.path, exc.reason)
        return self.transform(image), label, None


class ArrayImages(Dataset):
    """Small in-memory uint8 images ``(n, h, w)`` or ``(n, h, w, c)`` (the bundled digits, synthetic data), turned
    into Pillow images on access so they take the same transforms as files."""

    def __init__(self, images: np.ndarray, labels: Sequence[int], transform: Callable, mode: str) -> None:
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.transform, self.mode = transform, mode

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Item:
        from PIL import Image

        image = Image.fromarray(self.images[index]).convert(self.mode)
        return self.transform(image), int(self.labels[index]), None


def collate(items: list[Item]) -> Batch:
    """Stack the decoded items; files that could not be read are left out and returned as ``(path, reason)``."""
    kept = [(x, y) for x, y, bad in items if bad is None]
    bad = tuple(b for _, _, b in items if b is not None)
    if not kept:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), bad
    return torch.stack([x for x, _ in kept]), torch.tensor([y for _, y in kept], dtype=torch.long), bad


def default_workers() -> int:
    """Loader workers when ``--workers`` is not given: the CPUs this process may use, less one for the training
    step, at most 8 (0, decoding in the training process, on a single CPU)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus - 1))


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are read: per-process batch size, worker processes, pinned memory for a GPU."""

    batch_size: int
    workers: int
    pin_memory: bool = False

    def loader(self, dataset: Dataset, sampler: object | None = None, *, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
            drop_last=drop_last,
            persistent_workers=False,
            prefetch_factor=4 if self.workers else None,
        )


def unreadable(bad: tuple[tuple[str, str], ...], skip: bool) -> list[str]:
    """The paths of a batch's unreadable files when ``skip`` (``--skip-bad-images``); otherwise the first one
    stops the run: :class:`BadImageError` naming the file and the reason."""
    if bad and not skip:
        raise BadImageError(*bad[0])
    return [path for path, _ in bad]
