"""What a run reports: metrics as JSON lines, the progress bar, the figures it ends with and their table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit_core.training.checkpoint import CHECKPOINT

METRICS = "metrics.jsonl"
"""The metrics file inside a run's ``--out`` folder."""


class Metrics:
    """JSON lines in ``path`` (appended on resume); nothing when ``path`` is None (ranks other than 0)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, **record: Any) -> None:
        """Append ``record`` as one line."""
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


@dataclass
class Result:
    """What the run ended with (``accuracy`` None for trainers)."""

    name: str
    params: int
    steps: int
    epochs: int
    seconds: float
    train_loss: float
    test_loss: float
    accuracy: float | None
    images_per_s: float
    out: Path | None
    data: str
    world: int
    loop_overhead: float = float("nan")
    history: list[dict[str, Any]] = field(default_factory=list)


def progress_bar(enabled: bool) -> Any:
    """A rich progress bar (epoch, steps, loss, images/s, time left) that shows nothing unless ``enabled``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def print_summary(console: Any, result: Result) -> None:
    """The final table of a run."""
    from rich.table import Table

    table = Table(title=f"{result.name} on {result.data}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("parameters", f"{result.params:,}"),
        ("steps", f"{result.steps} ({result.epochs} epochs, {result.world} process(es))"),
        ("time", f"{result.seconds:.1f} s"),
        ("images/s", f"{result.images_per_s:.0f} (training steps; evaluation and checkpoints excluded)"),
        ("loop overhead", f"{result.loop_overhead:.1%} over the bare steps (data, logging, progress bar)"),
        ("last train loss", f"{result.train_loss:.4f}"),
        ("test loss", f"{result.test_loss:.4f}"),
    ]
    if result.accuracy is not None:
        rows.append(("test accuracy", f"{result.accuracy:.4f}"))
    if result.out is not None:
        rows.append(("metrics", str(result.out / METRICS)))
        rows.append(("checkpoint", f"{result.out / CHECKPOINT}  (vit_core.load_model reads it)"))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
