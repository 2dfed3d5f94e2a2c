"""``python -m benchmarks [--quick] [--out docs/benchmarks.md] [--only vit,navit,long,compile]
[--device cpu|cuda] [--dtype float32|bfloat16|float16]``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
from pathlib import Path

STUBS = Path(__file__).resolve().parent.parent / "tests" / "stubs"
if importlib.util.find_spec("torchvision") is None:
    sys.path.insert(0, str(STUBS))

import torch  # noqa: E402

from benchmarks import cases  # noqa: E402

SECTIONS = ("vit", "navit", "long", "compile")
DTYPES = ("float32", "bfloat16", "float16")


def machine_line(setup: cases.Setup) -> str:
    precision = setup.dtype_name
    if setup.dtype != torch.float32:
        precision += " autocast"
    device = torch.cuda.get_device_name(setup.device) if torch.device(setup.device).type == "cuda" else "CPU"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {precision}, Python {platform.python_version()}"
    )


class Report(list):
    """Markdown lines, echoed to stdout as they are added (a full run takes a while)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)

    def __iadd__(self, lines):
        for line in lines:
            self.append(line)
        return self


def run(
    quick: bool = False,
    only: tuple[str, ...] = SECTIONS,
    setup: cases.Setup = cases.CPU_FP32,
    rounds: int = 7,
    vit_names: tuple[str, ...] | None = None,
) -> str:
    """Run the selected sections and return the Markdown report (``rounds`` kept per timing;
    ``vit_names`` restricts the ViT section to those cases)."""
    rounds = 1 if quick else rounds
    lines = Report()
    lines += ["# Benchmarks", "", f"Machine: {machine_line(setup)}", ""]
    probe_side = 256 if quick else 1536
    rate = cases.matmul_rate(probe_side, repeats=3 if quick else 10, setup=setup)
    lines += [
        f"Matrix-product rate at this precision, at the start: {rate / 1e9:.1f} GFLOP/s",
        "",
        "Speed-ups are medians of per-round ratios, with their interquartile range in brackets. The",
        "training share of the matrix-product rate compares each step's FLOP rate with that of",
        f"{probe_side} x {probe_side} matrix products timed in the same round.",
        "",
    ]
    vit_cases = cases.QUICK if quick else cases.FULL
    if vit_names is not None:
        unknown = set(vit_names) - {c.name for c in vit_cases}
        if unknown:
            raise ValueError(f"unknown --cases {sorted(unknown)}; choose from {[c.name for c in vit_cases]}")
    batches = (2,) if quick else (8, 32)
    if "vit" in only:
        lines += [
            "## ViT and SimpleViT, eager",
            "",
            "| case | batch | impl | infer img/s | train img/s | vs timm (infer / train) | GFLOPs/img "
            "| train % of matmul rate | train peak MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for case in [c for c in vit_cases if vit_names is None or c.name in vit_names]:
            for batch in batches:
                result = cases.vit_throughput(case, batch, rounds, setup=setup, probe_side=probe_side)
                for impl in cases.implementations(case):
                    r = result[impl]
                    peak = cases.training_peak_memory(impl, case, batch, setup) / 2**20
                    versus = f"{r['infer_speedup']} / {r['train_speedup']}"
                    lines.append(
                        f"| {case.name} | {batch} | {impl} | {r['infer_ips']:.1f} | {r['train_ips']:.1f} | {versus} "
                        f"| {r['flops_per_image'] / 1e9:.2f} | {r['train_matmul_share'].as_share()} | {peak:.0f} |"
                    )
        lines.append("")
    if "compile" in only:
        case, batch = vit_cases[0], batches[-1]  # ViT-S/16 at the larger batch
        result = cases.vit_throughput(case, batch, rounds, compile_ours=True, setup=setup, probe_side=probe_side)
        lines += [
            "## ViT under torch.compile",
            "",
            "| case | batch | impl | infer img/s | train img/s | train vs timm eager |",
            "|---|---|---|---|---|---|",
        ]
        for impl in [k for k in result if k != "discarded_rounds"]:
            r = result[impl]
            lines.append(
                f"| {case.name} | {batch} | {impl} | {r['infer_ips']:.1f} | {r['train_ips']:.1f} "
                f"| {r['train_speedup']} |"
            )
        lines.append("")
    if "navit" in only:
        count, low, high, patch = (6, 16, 32, 8) if quick else (32, 64, 256, 16)
        images = cases.mixed_resolution_images(count, low, high, patch)
        cfg = dict(image_size=high, patch_size=patch, num_classes=1000, dim=64 if quick else 384,
                   depth=1 if quick else 6, heads=2 if quick else 6, mlp_dim=128 if quick else 1536,
                   dim_head=32 if quick else 64, token_dropout_prob=0.0)  # fmt: skip
        result = cases.navit_throughput(images, cfg, rounds, setup)
        lines += [
            f"## NaViT: {count} seeded images, sides {low}..{high}, patch {patch}",
            "",
            "| impl | infer img/s | train img/s | ours vs it (infer / train) | padded tokens | wasted attention |",
            "|---|---|---|---|---|---|",
        ]
        for impl, r in result.items():
            waste = {"padded_token_share": 0.0, "wasted_attention_share": 0.0}
            if impl.startswith("na_vit@"):
                waste = cases.navit_padding_waste(images, patch, int(impl.split("@")[1]))
            versus = f"{r['ours_infer_speedup']} / {r['ours_train_speedup']}"
            lines.append(
                f"| {impl} | {r['infer_ips']:.1f} | {r['train_ips']:.1f} | {versus} "
                f"| {waste['padded_token_share']:.0%} | {waste['wasted_attention_share']:.0%} |"
            )
        lines.append("")
    if "long" in only:
        lines += [
            "## One attention layer, forward + backward, long sequences",
            "",
            "| tokens | ours s | explicit s | ours speed-up | ours peak MB | explicit peak MB |",
            "|---|---|---|---|---|---|",
        ]
        for tokens in (64, 128) if quick else (1024, 2048, 4096):
            r = cases.long_sequence(tokens, 384, 6, rounds, setup)
            lines.append(
                f"| {tokens} | {r['ours']['seconds']:.3f} | {r['explicit']['seconds']:.3f} "
                f"| {r['ours']['speedup']} "
                f"| {r['ours']['peak_memory'] / 2**20:.0f} | {r['explicit']['peak_memory'] / 2**20:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny configurations (seconds; for the test suite)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: resident set / allocated)")
    parser.add_argument(
        "--dtype", default="float32", choices=DTYPES, help="below float32, the models run under autocast"
    )
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds kept per comparison")
    parser.add_argument("--cases", help="comma-separated ViT cases to run (default: all), e.g. ViT-S/16,SimpleViT-S/16")
    args = parser.parse_args()
    setup = cases.Setup(args.device, getattr(torch, args.dtype))
    names = tuple(args.cases.split(",")) if args.cases else None
    report = run(args.quick, tuple(args.only.split(",")), setup, args.rounds, names)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
