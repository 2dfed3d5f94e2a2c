"""``vit train vit`` as a user runs it (issue #16): the command line in a fresh process, its defaults, the
bundled digits, the progress bar drawn on a terminal.

What is recorded: the process's wall time from launch to exit (imports, data and model included), and
from the run's ``metrics.jsonl`` each epoch's test accuracy against the seconds since training started
and the loop's overhead over its bare training steps (data, logging and the progress bar included,
both measured by the loop itself in the same run).  Not a comparison: there is no anchor, only the
targets, so the run keeps these under ``results["training"]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTION = "train"
QUICK_ARGS = ("--epochs", "1", "--max-steps", "4", "--set", "depth=1")
"""--quick: a few steps of a one-layer model (seconds; the figures mean nothing)."""


def measure(quick: bool) -> dict:
    """Run ``vit train vit`` (its defaults; ``QUICK_ARGS`` with ``quick``) and return what it measured."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = ["train", "vit", *(QUICK_ARGS if quick else ()), "--out", str(out)]
        # the progress bar draws as on a terminal (rich reads these), so its cost is in the overhead
        env = os.environ | {"COLUMNS": "120", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "vit_core.cli", *args], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"vit {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [
        {key: r[key] for key in ("epoch", "step", "seconds", "accuracy", "loop_overhead")}
        for r in records
        if r["split"] == "test"
    ]
    reached = next((point["seconds"] for point in curve if point["accuracy"] >= 0.9), None)
    return {
        "section": SECTION,
        "name": "vit train vit",
        "command": "vit " + " ".join(args[:-2]),
        "wall_seconds": wall,
        "curve": curve,
        "accuracy": curve[-1]["accuracy"],
        "seconds_to_090": reached,
        "loop_overhead": curve[-1]["loop_overhead"],
    }


def table(runs: list[dict]) -> list[str]:
    """Markdown lines: each run's accuracy-against-seconds curve, its overhead and its wall time."""
    lines = []
    for run in runs:
        lines += [
            f"`{run['command']}`: the whole command took {run['wall_seconds']:.1f} s from launch to exit "
            f"(imports, data, model, training, evaluation and checkpoints); test accuracy "
            f"{run['accuracy']:.3f} at the end, 0.90 first reached "
            + (f"{run['seconds_to_090']:.1f} s into training." if run["seconds_to_090"] is not None else "never."),
            "",
            "| epoch | step | seconds into training | test accuracy | loop overhead so far |",
            "|---|---|---|---|---|",
        ]
        for p in run["curve"]:
            overhead = "-" if p["loop_overhead"] is None else f"{p['loop_overhead']:.1%}"
            lines.append(f"| {p['epoch']} | {p['step']} | {p['seconds']:.1f} | {p['accuracy']:.3f} | {overhead} |")
        lines.append("")
    return lines[:-1]
