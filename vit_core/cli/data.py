"""``vit data``: preparing image collections, e.g. WebDataset shards for multi-node training
(:mod:`vit_core.training.data.shards`)."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.output import console, fail

data_app = typer.Typer(
    help="Prepare image data: WebDataset shards from a folder.", no_args_is_help=True, rich_markup_mode=None
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
