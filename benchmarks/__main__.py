"""``python -m benchmarks [--quick] [--only vit,navit,long,compile] [--cases ...] [--batches ...] [--rounds N]
[--device cpu|cuda] [--dtype float32|bfloat16|float16] [--json FILE] [--write-docs [DIR]]
[--from-json FILE ...]``: measure, print the tables and targets, and optionally write the results'
JSON and the generated docs page (with its plot)."""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

STUBS = Path(__file__).resolve().parent.parent / "vit_core" / "testing" / "stubs"  # the tests' torchvision stand-in
if importlib.util.find_spec("torchvision") is None:
    sys.path.insert(0, str(STUBS))

import torch  # noqa: E402

from benchmarks import cases, efficient, hierarchical, kernels, report, training, variants  # noqa: E402
from vit_core.runtime import allocator  # noqa: E402

SECTIONS = (
    "vit", "navit", "long", "compile", *efficient.SECTIONS, variants.SECTION, hierarchical.SECTION, training.SECTION,
)  # fmt: skip
DTYPES = ("float32", "bfloat16", "float16")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(setup: cases.Setup, retained_heap: bool = False) -> str:
    """The CPU (or GPU), torch's version, the threads, the precision and, where set, the allocator setting
    (runs merge into one page only when their lines are equal)."""
    precision = setup.dtype_name
    if setup.dtype != torch.float32:
        precision += " autocast"
    device = torch.cuda.get_device_name(setup.device) if torch.device(setup.device).type == "cuda" else "CPU"
    return (
        f"{cpu_name()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {precision}, Python {platform.python_version()}"
        + (", malloc keeping freed memory (vit_core.runtime.allocator.retain_freed_memory)" if retained_heap else "")
    )


def versions() -> dict[str, str]:
    out = {}
    for dist in ("vit-core", "vit-pytorch", "timm"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def comparisons(
    quick: bool,
    only: tuple[str, ...],
    setup: cases.Setup,
    vit_names: tuple[str, ...] | None = None,
    vit_batches: tuple[int, ...] | None = None,
) -> list[tuple[str, object]]:
    """The comparisons of the selected sections as (name, builder) pairs; building is deferred so
    that one comparison's models are freed before the next is built."""
    vit_cases = cases.QUICK if quick else cases.FULL
    batches = vit_batches or ((2,) if quick else (8, 32))
    out: list[tuple[str, object]] = []
    if "vit" in only:
        for case in [c for c in vit_cases if vit_names is None or c.name in vit_names]:
            for batch in batches:
                build = functools.partial(cases.vit_comparison, case, batch, setup, memory=not quick)
                out.append((f"{case.name} b{batch}", build))
    if "compile" in only:
        case, batch = vit_cases[0], batches[-1]  # ViT-S/16 at the larger batch
        out.append(("compile", lambda: cases.vit_comparison(case, batch, setup, compile_ours=True, memory=False)))
    if "navit" in only:
        count, low, high, patch = (20, 16, 48, 8) if quick else (32, 64, 256, 16)
        images = cases.mixed_resolution_images(count, low, high, patch)
        cfg = dict(image_size=high, patch_size=patch, num_classes=1000, dim=32 if quick else 384,
                   depth=1 if quick else 12, heads=2 if quick else 6, mlp_dim=64 if quick else 1536,
                   dim_head=16 if quick else 64)  # fmt: skip
        out.append(("navit", lambda: cases.navit_comparison(images, cfg, setup)))
    if "long" in only:
        for tokens in (64, 128) if quick else (1024, 2048, 4096):
            build = functools.partial(cases.long_comparison, tokens, 384, 6, setup, memory=not quick)
            out.append((f"long {tokens}", build))
    out += efficient.comparisons(quick, only, setup)
    zoo = variants.comparisons(quick, only, setup) + hierarchical.comparisons(quick, only, setup)
    if vit_names is not None:  # the plugin sections' comparisons are named "section CASE index"
        unknown = set(vit_names) - {c.name for c in vit_cases} - {name.split(" ")[1] for name, _ in zoo}
        if unknown:
            choices = [c.name for c in vit_cases] + sorted({name.split(" ")[1] for name, _ in zoo})
            raise ValueError(f"unknown --cases {sorted(unknown)}; choose from {choices}")
        zoo = [(name, build) for name, build in zoo if name.split(" ")[1] in vit_names]
    return out + zoo


def run(
    quick: bool = False,
    only: tuple[str, ...] = SECTIONS,
    setup: cases.Setup = cases.CPU_FP32,
    rounds: int = 7,
    vit_names: tuple[str, ...] | None = None,
    command: str = "python -m benchmarks",
    json_path: Path | None = None,
    vit_batches: tuple[int, ...] | None = None,
    retained_heap: bool = False,
) -> dict:
    """Measure the selected sections and return the run's results (JSON-ready); each comparison's
    rows are printed as it completes, and the results so far are rewritten to ``json_path`` (when
    given) after each one, so a run cut short keeps what it measured."""
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown --only {sorted(unknown)}; choose from {list(SECTIONS)}")
    timer = cases.QUICK_TIMER if quick else cases.Timer(rounds=rounds)
    probe_side = 256 if quick else 1536
    selected = comparisons(quick, only, setup, vit_names, vit_batches)
    rate = cases.matmul_rate(probe_side, repeats=3 if quick else 10, setup=setup)
    results = {
        "meta": {
            "command": command,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_line(setup, retained_heap),
            "versions": versions(),
            "quick": quick,
            "rounds": timer.rounds,
            "probe_side": probe_side,
            "matmul_rate": rate,
        },
        "comparisons": [],
        "training": [],
    }
    for _, build in selected:
        if retained_heap:  # one comparison's freed blocks rarely fit the next one's tensors
            allocator.release_free_memory()
        measured = cases.measure(build(), timer, setup, probe_side)
        print("\n".join(report.progress_lines(measured)), flush=True)
        results["comparisons"].append(measured)
        if json_path is not None:
            write_json(results, json_path)
    if training.SECTION in only:
        results["training"].append(training.measure(quick))
        print("\n".join(training.table(results["training"])), flush=True)
        if json_path is not None:
            write_json(results, json_path)
    return results


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=1) + "\n")


def merge_runs(runs: list[dict]) -> dict:
    """One results dict from runs of different sections on one machine (``--from-json A B ...``):
    their comparisons in order (one a later run measured again: the later measurement); the first
    run's probe rate; every command, the dates' span and, where the runs kept different numbers of
    rounds, each run's."""
    first = runs[0]["meta"]
    for other in runs[1:]:
        for key in ("machine", "quick", "probe_side"):
            if other["meta"][key] != first[key]:
                raise ValueError(
                    f"--from-json runs must share {key}: {first[key]!r} (first run) against {other['meta'][key]!r}"
                )
    if len(runs) == 1:
        return runs[0]
    dates = [run["meta"]["date"] for run in runs]
    rounds = [run["meta"]["rounds"] for run in runs]
    meta = dict(first)
    meta["command"] = " && ".join(run["meta"]["command"] for run in runs)
    meta["date"] = f"{min(dates)} to {max(dates)}"
    if len(set(rounds)) > 1:
        meta["rounds"] = f"{', '.join(map(str, rounds))} (run by run, in the order of the commands)"
    return {
        "meta": meta,
        "comparisons": _latest([c for run in runs for c in run["comparisons"]], lambda c: (c["section"], c["name"])),
        "training": _latest([t for run in runs for t in run.get("training", [])], lambda t: t["command"]),
    }


def _latest(items: list[dict], key: Callable[[dict], object]) -> list[dict]:
    """``items`` in order, where a later run re-measured one (the same key) its measurement in place of the earlier."""
    latest = {key(item): item for item in items}
    seen: set = set()
    out = []
    for item in items:
        if key(item) not in seen:
            seen.add(key(item))
            out.append(latest[key(item)])
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny configurations (seconds; for the test suite)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument(
        "--cases", help="comma-separated cases to run in the selected sections (default: all), e.g. ViT-S/16,CaiT-XXS24"
    )
    parser.add_argument("--batches", help="comma-separated batch sizes of the ViT cases (default: 8,32; --quick: 2)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds kept per comparison")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: resident set / allocated)")
    parser.add_argument(
        "--dtype", default="float32", choices=DTYPES, help="below float32, the models run under autocast"
    )
    parser.add_argument(
        "--retain-freed-memory", action="store_true",
        help="time every implementation with malloc keeping freed memory (as vit train does; in the machine line)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the run's results here")
    parser.add_argument(
        "--write-docs", type=Path, nargs="?", const=Path("docs"), metavar="DIR",
        help="write benchmarks.md, benchmarks.json and the ratio plot into DIR (default docs)",
    )  # fmt: skip
    parser.add_argument(
        "--page-name", default=report.STEM, metavar="STEM",
        help=f"--write-docs: the files' stem (default {report.STEM}: {report.STEM}.md, .json, -ratios.png)",
    )  # fmt: skip
    parser.add_argument(
        "--from-json", type=Path, nargs="+", metavar="FILE",
        help="render saved runs' results instead of measuring (several: one machine's runs, merged in order)",
    )  # fmt: skip
    parser.add_argument(
        "--kernel-table", type=Path, nargs="?", const=Path("docs"), metavar="DIR",
        help=f"write only the attention-kernel page ({kernels.PAGE}) into DIR (default docs): no timing",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.kernel_table:
        print(f"wrote {kernels.write(args.kernel_table)}")
        return
    if args.from_json:
        results = merge_runs([json.loads(path.read_text()) for path in args.from_json])
    else:
        setup = cases.Setup(args.device, getattr(torch, args.dtype))
        names = tuple(args.cases.split(",")) if args.cases else None
        command = shlex.join(["python", "-m", "benchmarks", *argv])
        batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else None
        retained = args.retain_freed_memory and allocator.retain_freed_memory()
        if args.retain_freed_memory and not retained:
            parser.error("--retain-freed-memory needs glibc's malloc")
        results = run(
            args.quick, tuple(args.only.split(",")), setup, args.rounds, names, command, args.json, batches, retained
        )
    print(report.render_tables(results), flush=True)
    if args.json:
        write_json(results, args.json)
    if args.write_docs:
        print(f"wrote {report.write_docs(results, args.write_docs, stem=args.page_name)}")


if __name__ == "__main__":
    main()
