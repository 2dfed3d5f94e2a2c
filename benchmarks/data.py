"""``python -m benchmarks.data [--quick] [--write-docs [DIR]]``: the data pipeline of ``vit train`` at real size
(issue #26), on JPEG folders this script generates (scenes of random shapes, ~500x375, 10 classes).

Rows, each measured in fresh ``vit train`` processes as a user runs them:

* peak resident memory (the process and its loader workers together) on 20,000 JPEGs against 1,000 (same model,
  batch and workers): streaming keeps it flat;
* seconds from launch to the first training step on 100,000 files (hard links of a few JPEGs: listing, not
  decoding, is what the start pays for);
* loader throughput, images/s per worker, decode + ``basic`` and decode + ``deit`` augmentation at 224 px, beside
  what one ViT-S/16 training step consumes (images/s of the step itself);
* ``vit train vit-s-16 --augment deit`` with loader workers: the loop's time over its bare training steps.

Writes ``DIR/benchmarks-data.md`` and ``.json`` (generated, never typed) and ``DIR/augmentation-presets.png`` (one
training batch of every preset).  ``--quick`` runs every row on tiny sizes (seconds; the figures mean nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks.steps import training_rate

CLASSES = 10


def scene(rng: random.Random, label: int, size: tuple[int, int] = (500, 375)):
    """A photo-like JPEG-able scene: a gradient sky, ground, and shapes whose colour family is the class."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    top = tuple(rng.randrange(60, 200) for _ in range(3))
    for y in range(size[1]):
        shade = tuple(int(c * (1 - 0.5 * y / size[1])) for c in top)
        draw.line([(0, y), (size[0], y)], fill=shade)
    hue = [
        (200, 40, 40),
        (40, 180, 40),
        (40, 60, 200),
        (220, 200, 40),
        (200, 40, 200),
        (40, 200, 200),
        (240, 140, 20),
        (120, 60, 20),
        (250, 250, 250),
        (20, 20, 20),
    ][label]
    for _ in range(rng.randrange(3, 8)):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(20, 160), rng.randrange(20, 160)
        colour = tuple(max(0, min(255, c + rng.randrange(-40, 40))) for c in hue)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
    return image


def make_folder(root: Path, per_class: int, seed: int = 0, size: tuple[int, int] = (500, 375)) -> Path:
    """``root/class-k/NNNNNN.jpg``; already complete folders are kept (they take minutes to write)."""
    rng = random.Random(seed)
    for label in range(CLASSES):
        folder = root / f"class-{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            path = folder / f"{index:06d}.jpg"
            if not path.exists():
                scene(rng, label, size).save(path, quality=85)
    return root


def linked_folder(root: Path, source: Path, total: int) -> Path:
    """``total`` files, hard links of ``source``'s JPEGs taken from its classes in turn (a collection's listing
    cost, every class present)."""
    by_class = [sorted(folder.glob("*.jpg")) for folder in sorted(p for p in source.iterdir() if p.is_dir())]
    for index in range(total):
        files = by_class[index % len(by_class)]
        original = files[(index // len(by_class)) % len(files)]
        target = root / original.parent.name / f"{index:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(original, target)
    return root


def run_tree(args: list[str], env: dict, first_step: bool = False) -> dict:
    """Run ``vit ARGS`` and poll the resident memory of the process and its children; with ``first_step``,
    also the seconds from launch to its first ``step`` line."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vit_core.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak, first, lines = 0, None, []

    def read() -> None:
        nonlocal first
        for line in proc.stdout:
            lines.append(line)
            if first is None and " step 1/" in line:
                first = time.perf_counter() - start

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"vit {' '.join(args)} failed:\n{proc.stderr.read()[-3000:]}")
    return {
        "peak_rss_mb": peak / 2**20,
        "first_step_s": first,
        "wall_s": time.perf_counter() - start,
        "stdout": "".join(lines),
    }


def loader_rate(folder: Path, preset: str, count: int) -> float:
    """Images/s of one process decoding and augmenting ``count`` JPEGs at 224 px (one loader worker's rate)."""
    from vit_core.training.data.augment import Augmentation
    from vit_core.training.data.pipeline import DataSettings, load

    data = load(
        DataSettings(source=f"folder:{folder}", workers=0, augment=Augmentation.preset(preset)), "image", (3, 224, 224)
    )
    dataset = data.train_set
    indices = list(range(min(count, len(dataset))))
    dataset[indices[0]]
    start = time.perf_counter()
    for index in indices:
        dataset[index]
    return len(indices) / (time.perf_counter() - start)


def step_rate(batch: int, steps: int) -> float:
    """Images/s of the bare ViT-S/16 training step at 224 px on this process's threads."""
    from vit_core import create_model

    return training_rate(create_model("vit-s-16"), torch.randn(batch, 3, 224, 224), 1000, steps)


def measure(quick: bool, work: Path) -> dict:
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    env = os.environ | {"OMP_NUM_THREADS": threads, "COLUMNS": "200", "NO_COLOR": "1"}
    small, large, listed = (20, 100, 2_000) if quick else (1_000, 20_000, 100_000)
    big = make_folder(work / f"jpegs-{large}", large // CLASSES)
    few = work / f"jpegs-{small}"
    linked_folder(few, big, small)
    many = linked_folder(work / f"links-{listed}", big, listed)
    tiny = [
        "--set",
        "image_size=224",
        "--set",
        "patch_size=16",
        "--set",
        "channels=3",
        "--set",
        "dim=64",
        "--set",
        "depth=2",
        "--set",
        "heads=2",
        "--set",
        "mlp_dim=128",
    ]
    common = [*tiny, "--batch-size", "32", "--workers", "1", "--no-progress", "--log-every", "1"]
    steps = "8" if quick else "60"  # the same steps on both folders (epochs enough that neither ends first)
    memory = {
        count: run_tree(
            [
                "train",
                "vit",
                "--data",
                f"folder:{folder}",
                *common,
                "--max-steps",
                steps,
                "--epochs",
                "1000",
                "--out",
                str(work / f"run-{count}"),
            ],
            env,
        )
        for count, folder in ((small, few), (large, big))
    }
    start = run_tree(
        ["train", "vit", "--data", f"folder:{many}", *common, "--max-steps", "1", "--out", str(work / "run-listing")],
        env,
        first_step=True,
    )
    torch.set_num_threads(int(threads))
    rates = {preset: loader_rate(big, preset, 40 if quick else 400) for preset in ("basic", "deit")}
    consumed = step_rate(4 if quick else 32, 1 if quick else 3)
    deit_steps = "2" if quick else "12"
    run_tree(
        [
            "train",
            "vit-s-16",
            "--data",
            f"folder:{big}",
            "--augment",
            "deit",
            "--batch-size",
            "4" if quick else "32",
            "--workers",
            "1",
            "--no-progress",
            "--max-steps",
            deit_steps,
            "--epochs",
            "1",
            "--out",
            str(work / "run-deit"),
        ],
        env,
    )
    overhead = json.loads((work / "run-deit" / "metrics.jsonl").read_text().splitlines()[-1])["loop_overhead"]
    return {
        "threads": int(threads),
        "memory": {str(k): v["peak_rss_mb"] for k, v in memory.items()},
        "memory_ratio": memory[large]["peak_rss_mb"] / memory[small]["peak_rss_mb"],
        "listing_files": listed,
        "first_step_s": start["first_step_s"],
        "loader_images_per_s_per_worker": rates,
        "vit_s16_step_images_per_s": consumed,
        "deit_loop_overhead": overhead,
        "sizes": {"small": small, "large": large},
        "quick": quick,
    }


def page(results: dict, command: str) -> str:
    m, rates = results["memory"], results["loader_images_per_s_per_worker"]
    small, large = results["sizes"]["small"], results["sizes"]["large"]
    ok = lambda good: "met" if good else "**not met**"  # noqa: E731
    rows = [
        "| target (issue #26) | measured | |",
        "|---|---|---|",
        f"| peak memory on {large:,} JPEGs within 10% of {small:,} | {m[str(large)]:.0f} MB against "
        f"{m[str(small)]:.0f} MB ({results['memory_ratio']:.3f}x) | {ok(results['memory_ratio'] <= 1.10)} |",
        f"| first step within 10 s of launch on {results['listing_files']:,} files | "
        f"{results['first_step_s']:.1f} s | {ok(results['first_step_s'] <= 10)} |",
        f"| `--augment deit` loop time over its bare ViT-S/16 steps at most 10% | "
        f"{results['deit_loop_overhead']:.1%} | {ok(results['deit_loop_overhead'] <= 0.10)} |",
        "",
        "| loader, one worker, 224 px from ~500x375 JPEGs | images/s |",
        "|---|---|",
        f"| decode + `basic` (random resized crop, flip) | {rates['basic']:.0f} |",
        f"| decode + `deit` (+ RandAugment m9; Mixup/CutMix/erasing run on batches) | {rates['deit']:.0f} |",
        f"| one ViT-S/16 training step consumes ({results['threads']} thread(s), batch 32) | "
        f"{results['vit_s16_step_images_per_s']:.1f} |",
    ]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    cpu = platform.processor() or platform.machine()
    return "\n".join(
        [
            "# Data pipeline benchmarks",
            "",
            f"Generated by `{command}` on {stamp} ({os.cpu_count()} CPUs, {cpu}, torch {torch.__version__}); "
            "do not edit by hand. Each row runs `vit train` in fresh processes on JPEG folders the script writes.",
            "",
            *rows,
            "",
            "One training batch of each `--augment` preset (`vit data preview`):",
            "",
            "![augmentation presets](augmentation-presets.png)",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every row runs")
    parser.add_argument("--write-docs", type=Path, nargs="?", const=Path("docs"), metavar="DIR")
    parser.add_argument("--work", type=Path, default=None, metavar="DIR", help="where the JPEG folders go (kept)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        results = measure(args.quick, work)
        command = "python -m benchmarks.data" + (" --quick" if args.quick else "")
        print(json.dumps(results, indent=2))
        if args.write_docs is not None:
            from vit_core.training.data.preview import draw_presets

            args.write_docs.mkdir(parents=True, exist_ok=True)
            small = results["sizes"]["small"]
            draw_presets(
                f"folder:{work / f'jpegs-{small}'}",
                args.write_docs / "augmentation-presets.png",
                label="generated 500x375 scenes",
            )
            (args.write_docs / "benchmarks-data.json").write_text(json.dumps(results, indent=2) + "\n")
            (args.write_docs / "benchmarks-data.md").write_text(page(results, command))


if __name__ == "__main__":
    main()
