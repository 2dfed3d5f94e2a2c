"""What a run reports: metrics as JSON lines, the progress bar, the figures it ends with and their table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit_core.training.checkpoint import BEST, CHECKPOINT

METRICS = "metrics.jsonl"
"""The metrics file inside a run's ``--out`` folder."""
BAD_IMAGES = "bad-images.txt"
"""The files ``--skip-bad-images`` skipped, one per line, inside a run's ``--out`` folder."""


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
    skipped_images: int = 0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class EpochLines:
    """Progress where nobody watches (stdout not a terminal): one plain line every ``log_every`` steps and one per
    epoch with the held-out figures, images/s and the time left.  ``say=None`` prints nothing."""

    def __init__(self, say: Any, total: int, log_every: int) -> None:
        self.say, self.total, self.log_every = say, total, log_every
        self.last_accuracy: float | None = None
        self.rate = 0.0

    def step(self, step: int, epoch: int, loss: float, images_per_s: float, elapsed: float) -> None:
        self.rate = step / max(1e-9, elapsed)
        if self.say is not None:
            held_out = f" held-out accuracy {self.last_accuracy:.4f}" if self.last_accuracy is not None else ""
            eta = _clock((self.total - step) / max(1e-9, self.rate))
            self.say(
                f"epoch {epoch} step {step}/{self.total} loss {loss:.4f}{held_out} {images_per_s:.0f} img/s ETA {eta}"
            )

    def epoch(self, record: dict[str, Any], total: int) -> None:
        self.last_accuracy = record.get("accuracy", self.last_accuracy)
        if self.say is not None:
            held_out = f"accuracy {record['accuracy']:.4f} " if "accuracy" in record else ""
            eta = _clock((total - record["step"]) / max(1e-9, self.rate)) if self.rate else "?"
            self.say(
                f"epoch {record['epoch']} done: held-out {held_out}loss {record['loss']:.4f}, "
                f"{record['images_per_s']:.0f} img/s, {_clock(record['seconds'])} elapsed, ETA {eta}"
            )


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
    if result.skipped_images:
        rows.append(("skipped images", f"{result.skipped_images} (listed in {result.out / BAD_IMAGES})"))
    if result.out is not None:
        rows.append(("metrics", str(result.out / METRICS)))
        rows.append(("checkpoint", f"{result.out / CHECKPOINT} (last), {result.out / BEST} (best held-out)"))
        rows.append(("use it", f"vit predict {result.out} IMAGE ..., vit eval {result.out} --data SOURCE"))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
