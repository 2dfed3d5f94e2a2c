"""Image folders: one sub-folder per class, listed (never decoded) up front; the ImageNet ``train/`` + ``val/``
layout; a seeded stratified held-out split; class names mapped between splits by name."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from vit_core.training.data.decode import IMAGE_SUFFIXES, is_image_file

VAL_FOLDERS = ("val", "validation")
"""Names of the validation split beside ``train/`` in the ImageNet layout."""


class DataSourceError(ValueError):
    """A data source that cannot be used as given; the message names the option, the path and the fix."""


@dataclass(frozen=True)
class Listing:
    """Files by class: ``classes`` sorted folder names, ``files[i]`` / ``labels[i]`` one image each, and ``empty``
    the class folders that hold no image (kept as classes, so later labels do not shift)."""

    root: Path
    classes: tuple[str, ...]
    files: list[str] = field(repr=False)
    labels: list[int] = field(repr=False)
    empty: tuple[str, ...] = ()

    def counts(self) -> list[int]:
        counts = [0] * len(self.classes)
        for label in self.labels:
            counts[label] += 1
        return counts


def _images_below(folder: str) -> list[str]:
    """Every image file below ``folder`` (nested folders included, hidden ones skipped), sorted."""
    found = []
    for current, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(current, n) for n in names if is_image_file(Path(n))]
    return sorted(found)


def class_folders(root: Path, option: str) -> list[str]:
    """The class folder names of ``root``, sorted; refused when ``root`` is not a folder or holds none."""
    if not root.is_dir():
        raise DataSourceError(f"{option}: {str(root)!r} is not a folder (expected one sub-folder of images per class)")
    names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DataSourceError(
            f"{option}: {str(root)!r} has no sub-folders; expected one sub-folder of images per class"
        )
    return names


def list_folder(root: Path, option: str, classes: tuple[str, ...] | None = None) -> Listing:
    """List ``root``'s class folders.  With ``classes`` (the training classes) the folders are mapped onto them by
    name: a missing class is fine, a class the training set lacks is an error naming it."""
    names = class_folders(root, option)
    if classes is None:
        classes = tuple(names)
    else:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise DataSourceError(
                f"{option}: class folder(s) {', '.join(map(repr, unknown))} of {str(root)!r} are not classes of the "
                f"training set ({', '.join(classes)})"
            )
    files, labels, empty = [], [], []
    for name in names:
        images = _images_below(str(root / name))
        if not images:
            empty.append(name)
        files += images
        labels += [classes.index(name)] * len(images)
    if not files:
        raise DataSourceError(
            f"{option}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}, any case) in any class folder of {str(root)!r}"
        )
    return Listing(root, classes, files, labels, tuple(empty))


def imagenet_splits(root: Path) -> tuple[Path, Path] | None:
    """``(train, val)`` when ``root`` holds ``train/`` and ``val/`` (or ``validation/``), else ``None``."""
    train = root / "train"
    for name in VAL_FOLDERS:
        if train.is_dir() and (root / name).is_dir():
            return train, root / name
    return None


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, held_out)``: ``fraction`` of each class held out (at least one where a class has two or
    more images), the same ones for the same seed."""
    if not 0.0 < fraction < 1.0:
        raise DataSourceError(f"--val-fraction must be in (0, 1), got {fraction}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    rng = random.Random(seed)
    train, held = [], []
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        count = min(len(members) - 1, max(1, round(len(members) * fraction))) if len(members) > 1 else 0
        held += members[:count]
        train += members[count:]
    return sorted(train), sorted(held)
