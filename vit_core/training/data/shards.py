"""WebDataset tar shards: written from an image folder, streamed back split across ranks and loader workers.

``vit data shards folder:PATH OUT --shard-size 1000`` writes ``OUT/train-000000.tar ...`` (and ``val-*`` for the
ImageNet layout), each sample the original encoded file (``.jpg``, ``.png``, ...) with its class index (``cls``)
and class name (``class.txt``), plus ``OUT/dataset.json`` naming the classes and each split's sample count and
brace pattern.  Training reads ``wds:OUT/train-{000000..000012}.tar``: shards go to torchrun ranks, then to the
rank's loader workers (:func:`webdataset.split_by_node`, :func:`webdataset.split_by_worker`), so each process
decodes only its own part, the way multi-node ViT training reads data at scale.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vit_core.training.data.decode import BadImageError, decode
from vit_core.training.data.folders import DataSourceError, Listing

INDEX_FILE = "dataset.json"
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pbm", "jpe", "jfif")


def _webdataset():
    try:
        import webdataset
    except ImportError:
        raise ImportError("WebDataset shards need webdataset: pip install 'vit-core[train]'") from None
    return webdataset


def write_split(listing: Listing, out: Path, split: str, shard_size: int) -> dict:
    """Write ``listing``'s files into ``out/{split}-NNNNNN.tar`` shards of ``shard_size`` samples; returns the
    split's index entry.  Each shard is written under a temporary name and renamed when complete."""
    if shard_size < 1:
        raise DataSourceError(f"--shard-size must be at least 1, got {shard_size}")
    wds = _webdataset()
    count = len(listing.files)
    shards = max(1, -(-count // shard_size))
    for shard in range(shards):
        final = out / f"{split}-{shard:06d}.tar"
        partial = final.with_suffix(".tar.partial")
        with wds.TarWriter(str(partial)) as writer:
            for index in range(shard * shard_size, min(count, (shard + 1) * shard_size)):
                path, label = Path(listing.files[index]), listing.labels[index]
                suffix = path.suffix.lower().lstrip(".")
                writer.write(
                    {
                        "__key__": f"{index:09d}",
                        suffix: path.read_bytes(),
                        "cls": str(label),
                        "class.txt": listing.classes[label],
                    }
                )
        os.replace(partial, final)
    return {"samples": count, "shards": f"{split}-{{{0:06d}..{shards - 1:06d}}}.tar", "empty": list(listing.empty)}


def write_index(out: Path, classes: tuple[str, ...], splits: dict[str, dict]) -> Path:
    """``out/dataset.json``: the class names and every split's count and pattern (written atomically)."""
    index = out / INDEX_FILE
    partial = index.with_suffix(".json.partial")
    partial.write_text(json.dumps({"classes": list(classes), "splits": splits}, indent=2) + "\n")
    os.replace(partial, index)
    return index


@dataclass(frozen=True)
class ShardSource:
    """A ``wds:PATTERN`` source: the shard URLs, the class names and the sample count from ``dataset.json``."""

    pattern: str
    urls: tuple[str, ...]
    classes: tuple[str, ...]
    samples: int

    @classmethod
    def open(cls, pattern: str, option: str) -> ShardSource:
        from braceexpand import braceexpand

        urls = tuple(braceexpand(os.path.expanduser(pattern)))
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise DataSourceError(
                f"{option} wds:{pattern}: no shard {missing[0]!r} ({len(missing)} of {len(urls)} missing)"
            )
        index = Path(urls[0]).parent / INDEX_FILE
        if not index.is_file():
            raise DataSourceError(
                f"{option} wds:{pattern}: no {INDEX_FILE} beside the shards (class names and counts); write shards "
                "with `vit data shards`"
            )
        try:
            meta = json.loads(index.read_text())
            classes = tuple(meta["classes"])
            names = {Path(u).name for u in urls}
            samples = sum(
                split["samples"] for split in meta["splits"].values() if names & set(braceexpand(split["shards"]))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataSourceError(f"{option}: {str(index)!r} is not a shard index: {exc}") from None
        return cls(pattern, urls, classes, samples)

    def dataset(self, transform: Callable, mode: str, classes: tuple[str, ...], *, train: bool, seed: int) -> object:
        """An iterable of decoded ``(image, label, None)`` items (``(None, label, (name, reason))`` for a bad
        one).  Training: shards split across ranks and workers, shuffled; the loop reads it pass after pass and
        takes a fixed number of batches per epoch, the same on every rank.  Evaluation: every shard once, on every
        rank."""
        wds = _webdataset()
        remap = [classes.index(name) if name in classes else None for name in self.classes]
        unknown = [name for name, to in zip(self.classes, remap, strict=True) if to is None]
        if unknown:
            raise DataSourceError(f"wds:{self.pattern}: classes {unknown} are not classes of the training set")

        def item(sample: dict) -> tuple:
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            name = f"{sample.get('__url__', self.pattern)}:{sample['__key__']}"
            label = remap[int(sample["cls"])]
            if key is None:
                return None, label, (name, "the sample holds no image")
            try:
                return transform(decode(sample[key], mode, name)), label, None
            except BadImageError as exc:
                return None, label, (exc.path, exc.reason)

        if train:
            pipeline = wds.WebDataset(
                list(self.urls),
                nodesplitter=wds.split_by_node,
                workersplitter=wds.split_by_worker,
                shardshuffle=len(self.urls),
                detshuffle=True,
                seed=seed,
                empty_check=False,
            ).shuffle(1000, rng=random.Random(seed))
        else:
            pipeline = wds.WebDataset(list(self.urls), nodesplitter=_every_shard, shardshuffle=False, empty_check=False)
        return pipeline.map(item)


def _every_shard(urls: list[str]) -> Iterator[str]:
    """Evaluation reads every shard on every rank."""
    yield from urls
