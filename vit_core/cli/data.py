"""``vit data``: preparing image collections, e.g. WebDataset shards for multi-node training
(:mod:`vit_core.training.data.shards`)."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.output import console, fail

data_app = typer.Typer(
    help="Prepare and inspect image data: WebDataset shards from a folder, augmentation previews.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@data_app.command("shards")
def shards(
    source: Annotated[
        str, typer.Argument(help="folder:PATH (one sub-folder per class, or train/ + val/ inside).", metavar="SOURCE")
    ],
    out: Annotated[str, typer.Argument(help="The folder to write the shards and dataset.json to.", metavar="OUT")],
    shard_size: Annotated[int, typer.Option(help="Samples per tar shard.", metavar="N")] = 1000,
) -> None:
    """Write OUT/train-NNNNNN.tar (and val-* for the train/ + val/ layout) from a folder, keeping each file's
    bytes, its class index and name, and OUT/dataset.json (classes, counts, brace patterns)."""
    from pathlib import Path

    from vit_core.training.data.folders import DataSourceError, imagenet_splits, list_folder
    from vit_core.training.data.shards import write_index, write_split

    if not source.startswith("folder:"):
        fail(f"SOURCE must be folder:PATH, got {source!r}")
    if shard_size < 1:
        fail(f"--shard-size must be at least 1, got {shard_size}")
    root = Path(source.removeprefix("folder:")).expanduser()
    target = Path(out).expanduser()
    try:
        layout = imagenet_splits(root)
        train = list_folder(layout[0] if layout else root, f"SOURCE {source}")
        target.mkdir(parents=True, exist_ok=True)
        splits = {"train": write_split(train, target, "train", shard_size)}
        if layout:
            val = list_folder(layout[1], f"SOURCE {source} ({layout[1].name}/)", train.classes)
            splits["val"] = write_split(val, target, "val", shard_size)
        write_index(target, train.classes, splits)
    except (DataSourceError, OSError, ImportError) as exc:
        fail(str(exc))
    for split, entry in splits.items():
        console.print(
            f"{split}: {entry['samples']} images of {len(train.classes)} classes -> wds:{target / entry['shards']}",
            markup=False,
            highlight=False,
        )


@data_app.command("preview")
def preview(
    source: Annotated[str, typer.Argument(help="folder:PATH or wds:PATTERN.", metavar="SOURCE")],
    out: Annotated[str, typer.Argument(help="The PNG to write.", metavar="FILE.png")],
    size: Annotated[int, typer.Option(help="Image side in pixels.", metavar="N")] = 96,
    count: Annotated[int, typer.Option(help="Images per preset.", metavar="N")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the draws.", metavar="N")] = 0,
) -> None:
    """Draw one training batch of SOURCE through each --augment preset (none, basic, deit), one row each."""
    from pathlib import Path

    from vit_core.training.data.folders import DataSourceError
    from vit_core.training.data.preview import draw_presets

    for name, value in (("--size", size), ("--count", count)):
        if value < 1:
            fail(f"{name} must be at least 1, got {value}")
    try:
        written = draw_presets(source, Path(out), size, count, seed)
    except (DataSourceError, ValueError, ImportError) as exc:
        fail(str(exc))
    console.print(f"wrote {written}", markup=False, highlight=False)
