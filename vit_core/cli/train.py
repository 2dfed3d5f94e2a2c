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
    lr: Annotated[float, typer.Option(help="Peak learning rate.", metavar="LR")] = 3e-3,
    lr_base: Annotated[
        float | None,
        typer.Option(help="Peak rate of a global batch of 512, scaled: LR = X * batch / 512.", metavar="X"),
    ] = None,
    min_lr: Annotated[float, typer.Option(help="Learning rate the cosine decay ends at.", metavar="LR")] = 0.0,
    opt: Annotated[str, typer.Option(help="Optimizer: adamw or sgd (Nesterov momentum).", metavar="NAME")] = "adamw",
    momentum: Annotated[float, typer.Option(help="SGD momentum.", metavar="X")] = 0.9,
    weight_decay: Annotated[
        float, typer.Option(help="Weight decay (never on biases, norms, positions, tokens).", metavar="X")
    ] = 0.05,
    layer_decay: Annotated[
        float | None, typer.Option(help="Layer-wise lr decay per block from the head down (fine-tuning).", metavar="X")
    ] = None,
    warmup: Annotated[
        float, typer.Option(help="Linear warm-up, a fraction of the steps; cosine decay after.", metavar="FRACTION")
    ] = 0.1,
    warmup_epochs: Annotated[
        float | None, typer.Option(help="Linear warm-up in epochs (replaces --warmup).", metavar="N")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, bf16 (autocast) or fp16 (autocast + loss scaling, CUDA).", metavar="P")
    ] = "fp32",
    accum_steps: Annotated[
        int, typer.Option(help="Micro-batches per optimizer step (--batch-size stays the step's batch).", metavar="N")
    ] = 1,
    ema: Annotated[
        float | None, typer.Option(help="Keep an EMA of the weights with this decay (e.g. 0.9998).", metavar="DECAY")
    ] = None,
    drop_path: Annotated[
        float | None, typer.Option(help="Stochastic depth, rising to this rate at the last block.", metavar="P")
    ] = None,
    compile: Annotated[bool, typer.Option("--compile", help="Run the model under torch.compile.")] = False,
    channels_last: Annotated[
        bool,
        typer.Option("--channels-last", help="Channels-last layout for convolutions and image batches (faster)."),
    ] = False,
    tf32: Annotated[bool, typer.Option(help="TF32 matrix products for fp32 on CUDA.")] = True,
    strategy: Annotated[str, typer.Option(help="Under torchrun: ddp or fsdp (FSDP2, per block).", metavar="S")] = "ddp",
    init: Annotated[
        str | None,
        typer.Option(
            help="Start from a saved model, run folder or pretrained checkpoint (fine-tuning).", metavar="SRC"
        ),
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Also write the last checkpoint every N steps.", metavar="N")
    ] = None,
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
    *,
    ctx: typer.Context,
) -> None:
    """Train a registered model (classifiers: accuracy on a held-out split) or a trainer around an encoder.

    Images are decoded in DataLoader workers and augmented (--augment); AdamW or SGD over parameter groups
    (no weight decay on biases, norms, positions, tokens; --layer-decay), linear warm-up and cosine decay,
    gradient clipping, --precision, --accum-steps, --ema, --init, --resume mid-epoch; metrics as JSON lines
    in OUT/metrics.jsonl, the last checkpoint in OUT/checkpoint and the best held-out one in OUT/best
    (vit predict / vit eval / vit_core.load_model read OUT). Under `torchrun --nproc-per-node N` the same
    command trains with DistributedDataParallel (--strategy fsdp: FSDP2).
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
            lr_base=lr_base,
            min_lr=min_lr,
            opt=opt,
            momentum=momentum,
            weight_decay=weight_decay,
            layer_decay=layer_decay,
            warmup=warmup,
            warmup_epochs=warmup_epochs,
            precision=precision,
            accum_steps=accum_steps,
            ema=ema,
            drop_path=drop_path,
            compile=compile,
            channels_last=channels_last,
            tf32=tf32,
            strategy=strategy,
            init=init,
            checkpoint_every=checkpoint_every,
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
            given=frozenset(key for key in ctx.params if ctx.get_parameter_source(key).name == "COMMANDLINE"),
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
