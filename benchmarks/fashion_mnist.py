"""``python -m benchmarks.fashion_mnist [--folder DIR] [--write-docs [DIR]] [--quick]``: the accuracy target of
issue #27 on a real data set, trained as a user would.

Fashion-MNIST (70,000 real 28x28 grey product photos, 10 classes; Debian's ``dataset-fashion-mnist`` installs its
four idx files under ``/usr/share/datasets/fashion-mnist``) is converted once into the ImageNet folder layout
(``FOLDER/train/<class>/*.png`` from the 60,000 training images, ``FOLDER/val/<class>/*.png`` from the official
10,000 test images, class folders named after the data set's labels).  Then :data:`COMMAND` runs in a fresh
process; its ``metrics.jsonl`` gives held-out accuracy against seconds since launch (data loading included).
The step's throughput in fp32 and bf16 on this CPU is measured beside it.  Writes
``DIR/benchmarks-fashion-mnist.md`` and ``.json`` (generated, never typed).
"""

from __future__ import annotations

import argparse
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
    n_conv_layers=2,
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
)
"""CCT (vit-variants' ``cct``, arXiv:2104.05704) with a two-layer convolutional tokenizer, four transformer
layers of width 128 and sequence pooling: a registered model whose convolutional stem suits 28x28 images.  No
stochastic depth (CCT's default is 0.1): six epochs underfit rather than overfit.  Attention dropout stays at
CCT's 0.1: on this CPU its bf16 step runs at 476 images/s against 281 without it (the dropout path of
``scaled_dot_product_attention`` is faster than its fused CPU kernel at 49 tokens)."""
MODEL_ARGS = tuple(arg for key, value in MODEL.items() for arg in ("--set", f"{key}={value}"))
COMMAND = (
    "vit",
    "train",
    "cct",
    "--data",
    "folder:FOLDER",
    *MODEL_ARGS,
    "--epochs",
    "6",
    "--batch-size",
    "128",
    "--lr",
    "2e-3",
    "--precision",
    "bf16",
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


def step_rate(precision: str, batch: int = 128, steps: int = 10) -> float:
    """Images/s of the bare training step of :data:`MODEL` (fp32, or bf16 autocast) on 2 threads."""
    from vit_core import create_model

    torch.set_num_threads(2)
    model = create_model("cct", **MODEL, num_classes=10)
    return training_rate(model, torch.randn(batch, 1, 28, 28), 10, steps, warmup=2, bf16=precision == "bf16")


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
        f"| training step, fp32 (2 threads, batch 128) | {result['fp32_images_per_s']:.0f} images/s | |",
        f"| training step, bf16 autocast (2 threads, batch 128) | {result['bf16_images_per_s']:.0f} images/s | |",
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
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        sys.exit(f"{args.source}: not found; apt-get install dataset-fashion-mnist")
    folder = convert(args.source, args.folder, limit=100 if args.quick else None)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(folder, Path(tmp) / "run", args.quick)
    result["fp32_images_per_s"] = step_rate("fp32", steps=2 if args.quick else 10)
    result["bf16_images_per_s"] = step_rate("bf16", steps=2 if args.quick else 10)
    print(json.dumps(result, indent=2))
    if args.write_docs is not None:
        (args.write_docs / "benchmarks-fashion-mnist.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.write_docs / "benchmarks-fashion-mnist.md").write_text(page(result))


if __name__ == "__main__":
    main()
