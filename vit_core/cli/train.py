"""``vit train``: a registered classifier, or a trainer around an encoder (:mod:`vit_core.training`)."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.options import SET_METAVAR, OptionError, RetainFreedMemory, Threads, parse_sets
from vit_core.cli.output import console, fail
from vit_core.registry import ModelLookupError
from vit_core.runtime import allocator


def train(
    name: Annotated[str, typer.Argument(help="A registered model or trainer (see `vit list`).", metavar="NAME")],
    encoder: Annotated[
        str | None,
        typer.Option(help="Trainers: the registered model inside, e.g. `vit train mae --encoder vit`.", metavar="NAME"),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Model argument as key=value (a Python literal); repeatable.", metavar=SET_METAVAR),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="digits (bundled, no download; default), synthetic, folder:PATH (one sub-folder per class, or "
            "train/ + val/ inside) or wds:PATTERN (WebDataset shards, e.g. wds:shards/train-{000000..000009}.tar); "
            "--resume: the run's.",
            metavar="SOURCE",
        ),
    ] = None,
    val_data: Annotated[
        str | None,
        typer.Option(help="The held-out set: folder:PATH or wds:PATTERN, classes matched by name.", metavar="SOURCE"),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Held-out share of each class when there is no val/ or --val-data (0.1).", metavar="X"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="DataLoader worker processes decoding images (default: CPUs less one).", metavar="N"),
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="none, basic (random resized crop + flip; folders' default) or deit (+ RandAugment m9, Mixup 0.8, "
            "CutMix 1.0, erasing 0.25, label smoothing 0.1).",
            metavar="PRESET",
        ),
    ] = None,
    hflip: Annotated[float | None, typer.Option(help="Horizontal flip probability.", metavar="P")] = None,
    rand_augment: Annotated[
        float | None, typer.Option(help="RandAugment magnitude 0-10 (2 ops, noise 0.5).", metavar="M")
    ] = None,
    mixup: Annotated[float | None, typer.Option(help="Mixup alpha (0: off).", metavar="ALPHA")] = None,
    cutmix: Annotated[float | None, typer.Option(help="CutMix alpha (0: off).", metavar="ALPHA")] = None,
    reprob: Annotated[float | None, typer.Option(help="Random erasing probability.", metavar="P")] = None,
    skip_bad_images: Annotated[
        bool | None,
        typer.Option(
            "--skip-bad-images/--no-skip-bad-images",
            help="Skip files that cannot be decoded (listed in OUT/bad-images.txt) instead of stopping.",
            show_default=False,
        ),
    ] = None,
    interpolation: Annotated[
        str | None, typer.Option(help="Resize filter: bicubic (default) or bilinear.", metavar="NAME")
    ] = None,
    crop_pct: Annotated[
        float | None, typer.Option(help="Evaluation centre crop share (0.875 for photos).", metavar="X")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.", metavar="N")] = 10,
    batch_size: Annotated[int, typer.Option(help="Global batch (split over torchrun's processes).", metavar="N")] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.", metavar="LR")] = 3e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.", metavar="X")] = 0.05,
    warmup: Annotated[
        float, typer.Option(help="Linear warm-up, a fraction of the steps; cosine decay after.", metavar="FRACTION")
    ] = 0.1,
    label_smoothing: Annotated[
        float | None, typer.Option(help="Cross-entropy label smoothing (default: the preset's).", metavar="X")
    ] = None,
    clip: Annotated[float, typer.Option(help="Gradient-norm clipping (0: off).", metavar="NORM")] = 1.0,
    seed: Annotated[
        int, typer.Option(help="Seed of the initial weights, the batch order and dropout.", metavar="N")
    ] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps in all.", metavar="N")] = None,
    out: Annotated[str, typer.Option(help="Folder for metrics.jsonl and checkpoint/.", metavar="DIR")] = "runs/{name}",
    resume: Annotated[
        str | None, typer.Option(help="Continue the run in this folder from its checkpoint.", metavar="DIR")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda when present).", metavar="DEVICE")
    ] = None,
    threads: Threads = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    log_every: Annotated[
        int, typer.Option(help="Write a train line to metrics.jsonl every N steps.", metavar="N")
    ] = 10,
    retain_freed_memory: RetainFreedMemory = True,
) -> None:
    """Train a registered model (classifiers: accuracy on a held-out split) or a trainer around an encoder.

    Images are decoded in DataLoader workers and augmented (--augment); AdamW with linear warm-up and
    cosine decay, gradient clipping, metrics as JSON lines in OUT/metrics.jsonl, the last checkpoint in
    OUT/checkpoint and the best held-out one in OUT/best (vit predict / vit eval / vit_core.load_model
    read OUT). Under `torchrun --nproc-per-node N` the same command trains with DistributedDataParallel.
    """
    from pathlib import Path

    from vit_core.training import loop
    from vit_core.training.config import TrainConfig, TrainError
    from vit_core.training.data.decode import BadImageError
    from vit_core.training.report import print_summary

    if retain_freed_memory:
        allocator.retain_freed_memory()
    try:
        cfg = TrainConfig(
            name=name,
            encoder=encoder,
            overrides=parse_sets(sets or []),
            data=data,
            val_data=val_data,
            val_fraction=val_fraction,
            workers=workers,
            augment=augment,
            hflip=hflip,
            rand_augment=rand_augment,
            mixup=mixup,
            cutmix=cutmix,
            reprob=reprob,
            skip_bad_images=skip_bad_images,
            interpolation=interpolation,
            crop_pct=crop_pct,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup=warmup,
            label_smoothing=label_smoothing,
            clip=clip,
            seed=seed,
            max_steps=max_steps,
            out=Path(out.format(name=name.replace(":", "-"))),
            resume=Path(resume) if resume is not None else None,
            device=device,
            threads=threads,
            progress=progress,
            log_every=log_every,
        )
        result = loop.train(cfg, log=lambda text: console.print(text, markup=False, highlight=False))
    except ModelLookupError as exc:
        fail(str(exc))
    except (TrainError, OptionError) as exc:
        fail(str(exc))
    except BadImageError as exc:
        fail(str(exc))
    except (ValueError, TypeError, ImportError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
    if result.out is not None:
        print_summary(console, result)
