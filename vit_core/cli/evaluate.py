"""``vit eval``: accuracy of a trained classifier on a labelled source (:mod:`vit_core.tools.inference`)."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.output import console, dumps, fail


def evaluate(
    checkpoint: Annotated[
        str, typer.Argument(help="A `vit train` run folder or a saved model folder.", metavar="RUN_OR_CHECKPOINT")
    ],
    data: Annotated[
        str,
        typer.Option(
            help="folder:PATH (one sub-folder per class; val/ of the train/ + val/ layout), wds:PATTERN or digits.",
            metavar="SOURCE",
        ),
    ],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", metavar="N")] = 64,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (default: CPUs less one).", metavar="N")
    ] = None,
    skip_bad_images: Annotated[
        bool, typer.Option("--skip-bad-images", help="Skip files that cannot be decoded (listed).")
    ] = False,
    plot: Annotated[str | None, typer.Option(help="Write the confusion matrix to this PNG.", metavar="FILE")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Top-1 and top-5 accuracy, loss, per-class accuracy and the confusion matrix of a checkpoint on SOURCE
    (its classes matched to the checkpoint's by name; preprocessing from its pretrained_cfg)."""
    from pathlib import Path

    from vit_core.interop.saving import ModelFileError
    from vit_core.tools.inference import evaluate, load_classifier, plot_confusion
    from vit_core.training.data.decode import BadImageError
    from vit_core.training.data.folders import DataSourceError

    if batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    try:
        model = load_classifier(checkpoint)
        result = evaluate(model, data, batch_size=batch_size, workers=workers, skip_bad_images=skip_bad_images)
        if plot is not None:
            plot_confusion(result, Path(plot))
    except (BadImageError, DataSourceError, ModelFileError) as exc:
        fail(str(exc))
    except (ValueError, TypeError, ImportError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        console.print(dumps(result.to_json()), markup=False, highlight=False, soft_wrap=True)
        return
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    say(f"{result.samples} images of {data}: top-1 {result.top1:.4f}, top-5 {result.top5:.4f}, loss {result.loss:.4f}")
    width = max(len(name) for name in result.classes)
    for name, accuracy in result.per_class.items():
        say(f"  {name:<{width}}  {'-' if accuracy is None else f'{accuracy:.4f}'}")
    if result.skipped:
        say(f"skipped {len(result.skipped)} unreadable image(s): {', '.join(result.skipped[:5])}")
    if plot is not None:
        say(f"confusion matrix: {plot}")
