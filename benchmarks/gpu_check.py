"""``python -m benchmarks.gpu_check [--skip-tests] [--batch N] [--rounds N] [--write-docs [DIR]]``: the GPU
readiness check of issue #27, prepared for the day a CUDA GPU is at hand (about 3 minutes on an H100).

1. ``pytest -m cuda`` on ``tests/test_cuda.py`` (mixed-precision steps of ViT, NaViT and one model of each
   plugin, the fused SDPA kernel, ``--compile``, DDP over nccl, ``vit train`` under torchrun) and
   ``tests/test_navit_varlen.py`` (NaViT's varlen attention equals the per-run path);
2. a ViT-B/16 bf16 training-step throughput row: timm's ``vit_base_patch16_224`` against ours loaded through
   :func:`vit_core.load_pretrained` from timm's random-init weights saved to a temporary folder (the same
   weights), interleaved rounds in one process (:func:`vit_core.runtime.timing.interleaved`);
3. NaViT's packed training step on a batch of variable-size images, torch's varlen attention against the
   per-run path (one SDPA call per run of equal lengths).

Prints the rows with the card's name (``torch.cuda.get_device_name``); ``--write-docs`` writes
``DIR/benchmarks-gpu.md`` and ``.json`` (generated, never typed).  Exits with a message where torch sees no
CUDA device.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch

from benchmarks.pretrained import ARCH, STUBS, write_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TESTS = ("tests/test_cuda.py", "tests/test_navit_varlen.py")
TEST_TIMEOUT_S = 240
NAVIT = dict(image_size=256, patch_size=16, num_classes=1000, dim=384, depth=6, heads=6, mlp_dim=1536, dim_head=64)
"""A ViT-S/16-sized NaViT (images up to 256 pixels a side)."""
NAVIT_SIDES = (64, 96, 128, 160, 192, 224, 256)


class NoCudaError(SystemExit):
    """Raised (exit status 1, its message on stderr) where torch sees no CUDA device."""


def require_cuda() -> str:
    """The card's name, or :class:`NoCudaError` naming why there is none."""
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise NoCudaError(
            f"python -m benchmarks.gpu_check needs a CUDA GPU, and torch {torch.__version__} ({build}) sees none "
            "(torch.cuda.is_available() is False); run it on a machine with an NVIDIA GPU and a CUDA build of torch"
        )
    return torch.cuda.get_device_name()


def run_tests() -> dict:
    """``pytest -m cuda`` on :data:`TESTS`: its exit status, summary line and seconds."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "-rfEs", *TESTS]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TEST_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        return {"status": None, "summary": f"timed out after {TEST_TIMEOUT_S} s", "output": output[-4000:]}
    lines = done.stdout.strip().splitlines()
    return {
        "status": done.returncode,
        "summary": lines[-1] if lines else done.stderr.strip()[-300:],
        "output": (done.stdout + done.stderr)[-4000:],
        "seconds": time.perf_counter() - start,
    }


def synchronized(fn: Callable[[], object], repeat: int) -> Callable[[], None]:
    """``fn`` run ``repeat`` times, then waiting for the GPU (so a round times the device's work)."""

    def call() -> None:
        for _ in range(repeat):
            fn()
        torch.cuda.synchronize()

    return call


def training_step(model: torch.nn.Module, inputs: object, targets: torch.Tensor) -> Callable[[], None]:
    """One bf16-autocast AdamW step of ``model`` on ``inputs`` (master weights float32)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def vit_b16_row(batch: int, rounds: int, work: Path) -> dict:
    """timm's ViT-B/16 against ours of the same weights: bf16 training images/s."""
    if importlib.util.find_spec("torchvision") is None and str(STUBS) not in sys.path:
        sys.path.insert(0, str(STUBS))  # timm imports torchvision
    import timm

    from vit_core import load_pretrained
    from vit_core.runtime.timing import interleaved

    folder = write_checkpoint(work / ARCH, ARCH)
    ours = load_pretrained(folder).cuda()
    theirs = timm.create_model(
        ARCH, pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors"))
    )
    theirs = theirs.cuda()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")
    with torch.no_grad():
        # the same weights (TF32 convolutions on either side: a loose check; other weights would be far off)
        torch.testing.assert_close(ours.eval()(x[:2]), theirs.eval()(x[:2]), atol=1e-2, rtol=1e-2)
    repeat = 5
    timing = interleaved(
        {
            "ours": synchronized(training_step(ours, x, y), repeat),
            "timm": synchronized(training_step(theirs, x, y), repeat),
        },
        rounds=rounds,
        warmup=1,
        busy_tolerance=10.0,  # the GPU does the work; the host only waits
    )
    ratio = timing.speedup("ours", "timm")
    return {
        "row": f"ViT-B/16 ({ARCH}) training step, bf16 autocast, batch {batch}",
        "ours_images_per_s": batch * repeat / timing.median("ours"),
        "timm_images_per_s": batch * repeat / timing.median("timm"),
        "ratio": str(ratio),
        "ratio_median": ratio.median,
    }


def navit_row(batch: int, rounds: int) -> dict:
    """NaViT's bf16 training step on ``batch`` images of mixed sizes: varlen attention against per-run SDPA."""
    import vit_core.layers.packing as packing
    from vit_core import NaViT
    from vit_core.runtime.timing import interleaved

    torch.manual_seed(0)
    model = NaViT(**NAVIT).cuda()
    sides = [NAVIT_SIDES[i % len(NAVIT_SIDES)] for i in range(batch)]
    images = [torch.randn(3, h, NAVIT_SIDES[(i * 3) % len(NAVIT_SIDES)], device="cuda") for i, h in enumerate(sides)]
    y = torch.randint(0, 1000, (batch,), device="cuda")
    step = training_step(model, images, y)
    calls: list[int] = []
    real = packing.varlen_attn
    if real is None:
        raise SystemExit(f"torch {torch.__version__} has no torch.nn.attention.varlen: the NaViT row needs it")

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    def per_run() -> None:
        with mock.patch.object(packing, "varlen_supported", lambda q, k, v: False):
            step()

    with mock.patch.object(packing, "varlen_attn", counted):
        timing = interleaved(
            {"varlen": synchronized(step, 3), "per_run": synchronized(per_run, 3)},
            rounds=rounds,
            warmup=1,
            busy_tolerance=10.0,
        )
    if not calls:
        raise SystemExit("the NaViT row's varlen path never called varlen_attn on this GPU (varlen_supported refused)")
    ratio = timing.speedup("varlen", "per_run")
    return {
        "row": f"NaViT ({NAVIT['dim']} wide, depth {NAVIT['depth']}) training step, bf16, {batch} images of "
        f"{min(NAVIT_SIDES)}-{max(NAVIT_SIDES)} px",
        "varlen_images_per_s": batch * 3 / timing.median("varlen"),
        "per_run_images_per_s": batch * 3 / timing.median("per_run"),
        "ratio": str(ratio),
        "ratio_median": ratio.median,
    }


def page(r: dict, command: str) -> str:
    """The generated docs page of the results ``r``."""
    tests = r["tests"]
    vit, navit = r["vit_b16"], r["navit"]
    lines = [
        "# GPU check",
        "",
        f"Generated by `{command}` on {r['date']} on **{r['device']}** (torch {r['torch']}, CUDA {r['cuda']}); "
        "do not edit by hand.",
        "",
        f"`pytest -m cuda {' '.join(TESTS)}`: {tests['summary']}" if tests else "Tests skipped (`--skip-tests`).",
        "",
        "| row | ours | baseline | speed-up |",
        "|---|---|---|---|",
        f"| {vit['row']} | {vit['ours_images_per_s']:.0f} img/s | timm {vit['timm_images_per_s']:.0f} img/s | "
        f"{vit['ratio']} |",
        f"| {navit['row']} | varlen {navit['varlen_images_per_s']:.0f} img/s | per-run "
        f"{navit['per_run_images_per_s']:.0f} img/s | {navit['ratio']} |",
        "",
        "Speed-ups are the baseline's time over ours (above 1: ours is faster): medians of interleaved rounds, "
        "with their interquartile range.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, check for CUDA, run the tests and the rows, print them, write the page if asked."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description="GPU readiness: the cuda-marked tests, then ViT-B/16 bf16 training against timm and NaViT "
        "varlen against per-run attention, printed with the card's name.",
    )
    parser.add_argument("--skip-tests", action="store_true", help="only the throughput rows")
    parser.add_argument("--batch", type=int, default=64, help="ViT-B/16 batch and NaViT images per step (64)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (5)")
    parser.add_argument(
        "--write-docs", type=Path, nargs="?", const=ROOT / "docs", metavar="DIR", help="write DIR/benchmarks-gpu.md"
    )
    args = parser.parse_args(argv)
    for option in ("batch", "rounds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1, got {getattr(args, option)}")
    device = require_cuda()
    print(f"GPU check on {device}")
    start = time.perf_counter()
    tests = None
    if not args.skip_tests:
        tests = run_tests()
        print(tests["output"] if tests["status"] else tests["summary"])
    with tempfile.TemporaryDirectory() as tmp:
        vit = vit_b16_row(args.batch, args.rounds, Path(tmp))
    print(f"{device} | {vit['row']}: ours {vit['ours_images_per_s']:.0f} img/s, timm "
          f"{vit['timm_images_per_s']:.0f} img/s, speed-up {vit['ratio']}")  # fmt: skip
    navit = navit_row(args.batch, args.rounds)
    print(f"{device} | {navit['row']}: varlen {navit['varlen_images_per_s']:.0f} img/s, per-run "
          f"{navit['per_run_images_per_s']:.0f} img/s, speed-up {navit['ratio']}")  # fmt: skip
    results = {
        "device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}", "seconds": time.perf_counter() - start,
        "tests": {k: v for k, v in tests.items() if k != "output"} if tests else None, "vit_b16": vit, "navit": navit,
    }  # fmt: skip
    print(f"done in {results['seconds']:.0f} s")
    if args.write_docs is not None:
        command = "python -m benchmarks.gpu_check" + (" --skip-tests" if args.skip_tests else "")
        args.write_docs.mkdir(parents=True, exist_ok=True)
        (args.write_docs / "benchmarks-gpu.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.write_docs / "benchmarks-gpu.md").write_text(page(results, command))
    if tests is not None and tests["status"] != 0:
        raise SystemExit(f"the cuda tests failed: {tests['summary']}")


if __name__ == "__main__":
    main()
