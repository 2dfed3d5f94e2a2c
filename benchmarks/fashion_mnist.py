"""``python -m benchmarks.fashion_mnist [--folder DIR] [--write-docs [DIR]] [--quick]``: the accuracy target of
issue #27 on a real data set, trained as a user would.

Fashion-MNIST (70,000 real 28x28 grey product photos, 10 classes; Debian's ``dataset-fashion-mnist`` installs its
four idx files under ``/usr/share/datasets/fashion-mnist``) is converted once into the ImageNet folder layout
(``FOLDER/train/<class>/*.png`` from the 60,000 training images, ``FOLDER/val/<class>/*.png`` from the official
10,000 test images, class folders named after the data set's labels).  Then :data:`COMMAND` runs in a fresh
process; its ``metrics.jsonl`` gives held-out accuracy against seconds since launch (data loading included).
The step's throughput in fp32 and bf16 on this CPU is measured beside it, with and without ``--channels-last``
and the explicit attention scores of CPU training (``--rates-only``: those rows again, the recorded run kept).
Writes
``DIR/benchmarks-fashion-mnist.md`` and ``.json`` (generated, never typed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.steps import training_rate

SOURCE = Path("/usr/share/datasets/fashion-mnist")
LABELS = ("t-shirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
"""The data set's label names (its README), as folder names."""
MODEL = dict(
    img_size=28,
    n_input_channels=1,
    embedding_dim=128,
    n_conv_layers=3,
    kernel_size=3,
    stride=1,
    padding=1,
    pooling_kernel_size=3,
    pooling_stride=2,
    pooling_padding=1,
    num_layers=4,
    num_heads=4,
    mlp_ratio=2.0,
    positional_embedding="learnable",
    stochastic_depth_rate=0.0,
    attention_dropout=0.0,
)
"""CCT (vit-variants' ``cct``, arXiv:2104.05704) with a three-layer convolutional tokenizer (28x28 pooled to
a 4x4 grid of 16 tokens), four transformer layers of width 128 and sequence pooling: a registered model whose
convolutional stem suits 28x28 images.  No stochastic depth or attention dropout (CCT's defaults are 0.1): eleven
epochs underfit rather than overfit."""
MODEL_ARGS = tuple(arg for key, value in MODEL.items() for arg in ("--set", f"{key}={value}"))
COMMAND = (
    "vit",
    "train",
    "cct",
    "--data",
    "folder:FOLDER",
    *MODEL_ARGS,
    "--epochs",
    "11",
    "--batch-size",
    "128",
    "--lr",
    "2e-3",
    "--precision",
    "bf16",
    "--channels-last",
    "--augment",
    "none",
    "--hflip",
    "0.5",
    "--label-smoothing",
    "0.0",
    "--crop-pct",
    "1.0",
    "--workers",
    "1",
    "--threads",
    "2",
    "--log-every",
    "50",
)
"""The exact command (``FOLDER`` stands for the converted data set), as docs/training.md shows it."""
TARGET, LIMIT_S = 0.92, 15 * 60


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def convert(source: Path, folder: Path, limit: int | None = None) -> Path:
    """Write the ImageNet folder layout once (a ``.complete`` marker says it is whole)."""
    from PIL import Image

    marker = folder / ".complete"
    if marker.exists():
        return folder
    for split, prefix in (("train", "train"), ("val", "t10k")):
        images = read_idx(next(source.glob(f"{prefix}-images-idx3-ubyte*")))
        labels = read_idx(next(source.glob(f"{prefix}-labels-idx1-ubyte*")))
        for name in LABELS:
            (folder / split / name).mkdir(parents=True, exist_ok=True)
        for index in range(len(labels) if limit is None else limit):
            Image.fromarray(images[index], mode="L").save(folder / split / LABELS[labels[index]] / f"{index:05d}.png")
    marker.write_text("")
    return folder


STEP_SETTINGS = (
    ("fp32", False, False),
    ("bf16", False, False),
    ("bf16", True, False),
    ("fp32", True, True),
    ("bf16", True, True),
)
"""``(precision, channels-last, explicit CPU training scores)`` of each throughput row; the last is
:data:`COMMAND`'s, the first the engine's defaults before ``--channels-last`` and the explicit scores."""


def step_rate(precision: str, channels_last: bool, explicit: bool, batch: int = 128, steps: int = 10) -> float:
    """Images/s of the bare training step of :data:`MODEL` (fp32, or bf16 autocast) on 2 threads, in
    channels-last order or not, with the attention's explicit CPU training scores or SDPA's fused kernel."""
    from unittest import mock

    from vit_core import create_model
    from vit_core.layers import attention
    from vit_core.training.layout import batch_layout, to_channels_last

    torch.set_num_threads(2)
    model = create_model("cct", **MODEL, num_classes=10)
    model = to_channels_last(model) if channels_last else model
    x = batch_layout(torch.randn(batch, 1, 28, 28), channels_last)
    fused = mock.patch.dict(attention.EXPLICIT_CPU_TRAINING_KEYS, clear=True) if not explicit else None
    with fused if fused is not None else contextlib.nullcontext():
        return training_rate(model, x, 10, steps, warmup=2, bf16=precision == "bf16")


def step_rates(steps: int) -> list[dict]:
    """One row per :data:`STEP_SETTINGS`."""
    return [
        {"precision": p, "channels_last": c, "explicit": e, "images_per_s": step_rate(p, c, e, steps=steps)}
        for p, c, e in STEP_SETTINGS
    ]


def run(folder: Path, out: Path, quick: bool) -> dict:
    command = [a.replace("FOLDER", str(folder)) for a in COMMAND[1:]]
    if quick:
        command += ["--max-steps", "5"]
    env = os.environ | {"COLUMNS": "200", "NO_COLOR": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "vit_core.cli", *command, "--out", str(out)], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [{k: r[k] for k in ("epoch", "step", "seconds", "accuracy")} for r in records if r["split"] == "test"]
    startup = wall - (curve[-1]["seconds"] if curve else 0.0)  # launch to the loop: imports, listing, model
    for point in curve:
        point["since_launch"] = point["seconds"] + startup
    reached = next((p["since_launch"] for p in curve if p["accuracy"] >= TARGET), None)
    return {
        "command": " ".join(COMMAND),
        "wall_s": wall,
        "curve": curve,
        "accuracy": curve[-1]["accuracy"],
        "seconds_to_target": reached,
        "quick": quick,
    }


def page(result: dict) -> str:
    reached = result["seconds_to_target"]
    met = reached is not None and reached <= LIMIT_S
    lines = [
        "# Fashion-MNIST accuracy target",
        "",
        f"Generated by `python -m benchmarks.fashion_mnist` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} ({os.cpu_count()} CPUs, "
        f"{platform.machine()}, torch {torch.__version__}); do not edit by hand.",
        "",
        "| target (issue #27) | measured | |",
        "|---|---|---|",
        f"| top-1 >= {TARGET} on the 10,000 test images within {LIMIT_S // 60} min of launch | "
        f"{result['accuracy']:.4f} after {result['wall_s'] / 60:.1f} min"
        + (f"; {TARGET} first reached at {reached / 60:.1f} min" if reached else "")
        + f" | {'met' if met else '**not met**'} |",
        "",
        "The bare training step of the model (2 threads, batch 128; forward, backward, AdamW), by setting; the "
        "last row is the command's, the first the engine's defaults without `--channels-last` and with SDPA's "
        "fused kernel in CPU training:",
        "",
        "| precision | memory layout | attention in training | images/s | vs first row |",
        "|---|---|---|---|---|",
        *(
            f"| {r['precision']} | {'`--channels-last`' if r['channels_last'] else 'default'} | "
            f"{'explicit scores' if r['explicit'] else 'SDPA fused kernel'} | {r['images_per_s']:.0f} | "
            f"{r['images_per_s'] / result['step_rates'][0]['images_per_s']:.2f}x |"
            for r in result["step_rates"]
        ),
        "",
        "Accuracy against minutes since launch (data loading included):",
        "",
        "| epoch | minutes | top-1 |",
        "|---|---|---|",
        *(f"| {p['epoch']} | {p['since_launch'] / 60:.2f} | {p['accuracy']:.4f} |" for p in result["curve"]),
        "",
        "The command, verbatim (`FOLDER`: the converted data set):",
        "",
        "```bash",
        result["command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fashion_mnist")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "fashion-mnist-folder")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--write-docs", type=Path, nargs="?", const=Path("docs"), metavar="DIR")
    parser.add_argument("--quick", action="store_true", help="100 images a split, 5 steps: checks that it runs")
    parser.add_argument(
        "--rates-only", action="store_true", help="keep DIR's run (the .json) and measure the step rows again"
    )
    args = parser.parse_args(argv)
    if args.rates_only:
        if args.write_docs is None:
            sys.exit("--rates-only rewrites the page of a recorded run: give --write-docs DIR")
        result = json.loads((args.write_docs / "benchmarks-fashion-mnist.json").read_text())
    else:
        if not args.source.is_dir():
            sys.exit(f"{args.source}: not found; apt-get install dataset-fashion-mnist")
        folder = convert(args.source, args.folder, limit=100 if args.quick else None)
        with tempfile.TemporaryDirectory() as tmp:
            result = run(folder, Path(tmp) / "run", args.quick)
    result["step_rates"] = step_rates(steps=2 if args.quick else 10)
    print(json.dumps(result, indent=2))
    if args.write_docs is not None:
        (args.write_docs / "benchmarks-fashion-mnist.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.write_docs / "benchmarks-fashion-mnist.md").write_text(page(result))


if __name__ == "__main__":
    main()
