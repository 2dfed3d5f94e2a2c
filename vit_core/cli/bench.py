"""``vit bench``: registered models side by side, timed interleaved in one process (:mod:`vit_core.runtime.bench`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vit_core.cli.options import SET_METAVAR, OptionError, RetainFreedMemory, Threads, parse_sets
from vit_core.cli.output import Column, fail, print_rows
from vit_core.registry import ModelLookupError
from vit_core.runtime import allocator
from vit_core.runtime.measure import human

COLUMNS = (
    Column("model"),
    Column("kind", drop=0),
    Column("params", right=True),
    Column("FLOPs", right=True, drop=1),
    Column("infer img/s", right=True),
    Column("train img/s", right=True),
    Column("peak memory", right=True, drop=2),
)
"""The table's columns (FLOPs per sample, peak memory of a training step); on a narrow screen kind, FLOPs
and peak memory go in that order."""


def bench(
    names: Annotated[
        list[str], typer.Argument(help="Registered models, trainers or backends to compare.", metavar="NAME")
    ],
    batch: Annotated[int, typer.Option(help="Samples per call.", metavar="N")] = 8,
    rounds: Annotated[int, typer.Option(help="Timed rounds kept (medians are reported).", metavar="N")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed calls of each model first.", metavar="N")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...", metavar="DEVICE")] = "cpu",
    threads: Threads = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Argument for every model, key=value (a Python literal).", metavar=SET_METAVAR),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    retain_freed_memory: RetainFreedMemory = True,
) -> None:
    """Parameters, FLOPs, inference and training images/s and peak training memory, side by side.

    The models are timed interleaved in one process (round after round, one call of each), so that a
    busy shared machine slows every row alike; rounds during which other processes used the CPU are
    repeated. On CPU the timing process runs --threads intra-op threads (as vit train), printed in the
    table's title.
    """
    from vit_core.runtime import bench as runtime
    from vit_core.training.config import TrainError
    from vit_core.training.distributed import cpu_threads

    if retain_freed_memory:
        allocator.retain_freed_memory()
    try:
        count = cpu_threads(threads)
        overrides = parse_sets(sets or [])
    except (TrainError, OptionError) as exc:
        fail(str(exc))
    try:
        rows = runtime.bench(
            names, batch=batch, rounds=rounds, warmup=warmup, device=device, overrides=overrides, threads=count
        )
    except ModelLookupError as exc:
        fail(str(exc))
    except (TrainError, ValueError, TypeError, RuntimeError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    on = f"{device}, {count} thread{'s' * (count != 1)}" if device.partition(":")[0] == "cpu" else device
    title = f"batch {batch} on {on}: FLOPs per sample; medians of interleaved rounds"
    table = [
        [
            row.model,
            row.kind,
            human(row.params),
            human(row.flops) if row.flops is not None else "n/a",
            f"{row.infer_images_per_s:.1f}",
            f"{row.train_images_per_s:.1f}",
            f"{row.peak_train_memory / 2**20:.2f} MiB",
        ]
        for row in rows
    ]
    print_rows(COLUMNS, table, title)
