"""docs/benchmarks.md, its plot and its JSON, generated from a run's results (never typed by hand).

``write_docs(results, directory)`` writes ``benchmarks.md`` (the prose of ``page.md`` with the
run's tables and target rows in place of its ``<!-- ... -->`` markers), ``benchmarks.json`` (the
results it was made from) and ``benchmarks-ratios.png`` (every ours-vs-anchor ratio with its
interquartile range).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks import training
from benchmarks.harness import Ratio
from benchmarks.targets import (
    TARGETS,
    Target,
    call_flops,
    ceiling_share,
    evaluate,
    padded_tokens,
    row_of,
    share,
    speedup,
)

PAGE = Path(__file__).with_name("page.md")
STEM = "benchmarks"
"""The published page's file names: ``benchmarks.md``, ``.json`` and ``-ratios.png`` (``--page-name`` another)."""
MODE_NAMES = {"infer": "inference", "train": "training"}


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _per_mode(comparison: dict, fn) -> str:
    return " / ".join(fn(mode) for mode in comparison["modes"])


def _rate(comparison: dict, row: dict, mode: str) -> str:
    return f"{comparison['items'] / statistics.median(row['seconds'][mode]):.1f}"


def _tokens(comparison: dict, row: dict) -> str:
    counts = [row["work"][mode]["tokens"] for mode in comparison["modes"]]
    return f"{counts[0]:,}" if len(set(counts)) == 1 else " / ".join(f"{n:,}" for n in counts)


def _gflop(comparison: dict, row: dict) -> str:
    return _per_mode(comparison, lambda m: f"{call_flops(row, m) / 1e9:.2f}")


def _share(comparison: dict, row: dict, flops_of: str | None = None) -> str:
    return _per_mode(comparison, lambda m: share(comparison, row["label"], m, flops_of).as_share())


def _versus(comparison: dict, subject: str, anchor: str) -> str:
    if subject == anchor:
        return _per_mode(comparison, lambda m: "1.00x")
    return _per_mode(comparison, lambda m: str(speedup(comparison, subject, anchor, m)))


def _peak(row: dict) -> str:
    return f"{row['peak_memory'] / 2**20:,.0f}" if row.get("peak_memory") else "-"


def _legend(comparisons: list[dict]) -> list[str]:
    seen: dict[str, str] = {}
    for c in comparisons:
        for row in c["rows"]:
            seen.setdefault(row["label"], row["about"])
    return ["", *(f"- `{label}`: {about}" for label, about in seen.items())]


def _baseline(comparisons: list[dict]) -> str:
    names = {c["baseline"] for c in comparisons}
    return names.pop() if len(names) == 1 else "baseline"


def vit_table(comparisons: list[dict]) -> list[str]:
    """ViT and SimpleViT (and the compiled rows): every row against the comparison's baseline."""
    baseline = _baseline(comparisons)
    rows = []
    for c in comparisons:
        for row in c["rows"]:
            versus = _versus(c, row["label"], c["baseline"])
            if baseline == "baseline":
                versus += f" vs {c['baseline']}"
            rows.append(
                [c["params"]["case"], str(c["params"]["batch"]), row["label"], _rate(c, row, "infer"),
                 _rate(c, row, "train"), versus, _tokens(c, row), _gflop(c, row), _share(c, row), _peak(row)]
            )  # fmt: skip
    header = [
        "case", "batch", "impl", "infer img/s", "train img/s", f"vs {baseline} (infer / train)", "tokens per call",
        "GFLOP per call (infer / train)", "% of matmul rate (infer / train)", "train peak MB",
    ]  # fmt: skip
    return _md_table(header, rows) + _legend(comparisons)


def navit_table(comparisons: list[dict]) -> list[str]:
    out = []
    for c in comparisons:
        anchors = {anchor: subject for subject, anchor in c["pairs"]}
        p = c["params"]
        out += [
            f"{p['images']} seeded images ({p['patches']:,} patches), sides {p['sides']}, patch {p['patch']}, "
            f"dim {p['dim']}, depth {p['depth']}, heads {p['heads']} (dim_head {p['dim_head']}), mlp {p['mlp_dim']}.",
            "",
        ]
        rows = []
        for row in c["rows"]:
            label = row["label"]
            versus = f"{anchors[label]} vs it: {_versus(c, anchors[label], label)}" if label in anchors else "-"
            padded = " / ".join(f"{padded_tokens(c, label, m):,}" for m in c["modes"])
            masks = " / ".join(f"{row['work'][m]['mask_elements']:,}" for m in c["modes"])
            rows.append(
                [label, _rate(c, row, "infer"), _rate(c, row, "train"), versus, _tokens(c, row), padded, masks,
                 _gflop(c, row), _share(c, row), _share(c, row, c["useful"])]
            )  # fmt: skip
        header = [
            "impl", "infer img/s", "train img/s", "ratio (infer / train)", "tokens per call",
            "padded tokens (infer / train)", "attention-mask elements (infer / train)",
            "GFLOP per call (infer / train)", "% of matmul rate (infer / train)",
            f"useful work (`{c['useful']}`'s FLOPs), % of matmul rate (infer / train)",
        ]  # fmt: skip
        out += _md_table(header, rows) + _legend([c]) + _ceiling_line(c) + [""]
    return out


def _ceiling_line(comparison: dict) -> list[str]:
    """The legend line of a comparison's ceiling: its row's products timed alone (none: no line)."""
    ceiling = comparison.get("ceiling")
    if not ceiling:
        return []
    label = ceiling["label"]
    shares = _per_mode(comparison, lambda m: ceiling_share(comparison, label, m).as_share())
    return [
        f"- `{label}`'s matrix products and attention kernels alone (forward, and backward in training), replayed on "
        f"the operands of one call in the same rounds, with nothing else: {shares} (infer / train) of the matmul "
        "rate: the most its share can reach with these kernels, were norms, activations, copies, the optimizer and "
        "Python free."
    ]


def long_table(comparisons: list[dict]) -> list[str]:
    rows = []
    for c in comparisons:
        for row in c["rows"]:
            rows.append(
                [str(c["params"]["tokens"]), row["label"], f"{statistics.median(row['seconds']['train']):.3f}",
                 _versus(c, row["label"], c["baseline"]), _tokens(c, row), _gflop(c, row), _share(c, row), _peak(row)]
            )  # fmt: skip
    header = [
        "tokens", "impl", "s per call", f"vs {_baseline(comparisons)}", "tokens per call", "GFLOP per call",
        "% of matmul rate", "peak MB",
    ]  # fmt: skip
    return _md_table(header, rows) + _legend(comparisons)


TABLES = {"vit": vit_table, "compile": vit_table, "navit": navit_table, "long": long_table}
TABLES |= {"efficient-trunks": vit_table, "token-reduction": vit_table}  # vit-efficient (benchmarks/efficient.py)
TABLES |= {"variants": vit_table, "hierarchical": vit_table}  # benchmarks/variants.py, benchmarks/hierarchical.py


def targets_table(results: dict, targets: list[Target] = TARGETS) -> list[str]:
    rows = []
    for o in evaluate(results, targets):
        rows.append([f"#{o.target.issue}", o.target.text, o.where, o.measured, o.status])
    return _md_table(["issue", "target", "where", "measured", "status"], rows)


def section_tables(results: dict) -> dict[str, list[str]]:
    """Markdown lines of each section's table (sections the run did not measure say so)."""
    out = {}
    for section, table in TABLES.items():
        comparisons = [c for c in results["comparisons"] if c["section"] == section]
        discarded = sum(sum(c["discarded"].values()) for c in comparisons)
        out[section] = (
            [*table(comparisons), "", f"Busy rounds discarded and repeated: {discarded}."]
            if comparisons
            else ["Not measured in this run."]
        )
    runs = results.get("training", [])
    out[training.SECTION] = training.table(runs) if runs else ["Not measured in this run."]
    return out


def header_lines(results: dict, stem: str = STEM) -> list[str]:
    meta = results["meta"]
    return [
        f"Generated by `{meta['command']}` on {meta['date']} from its JSON ([{stem}.json]({stem}.json));",
        "do not edit the tables by hand: run the command again (see the end of this page).",
        "",
        f"Machine: {meta['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        f"Matrix-product rate at the start of the run: {meta['matmul_rate'] / 1e9:.1f} GFLOP/s "
        f"({meta['probe_side']} x {meta['probe_side']} products); {meta['rounds']} kept rounds per comparison"
        + (" (a --quick run: tiny configurations, times mean nothing)." if meta["quick"] else "."),
    ]


def render_tables(results: dict) -> str:
    """The run's header, every section's table and the targets, as one Markdown text (stdout)."""
    lines = ["# Benchmarks", "", *header_lines(results), ""]
    for section, table in section_tables(results).items():
        lines += [f"## {section}", "", *table, ""]
    lines += ["## Targets", "", *targets_table(results)]
    return "\n".join(lines)


def plot_name(stem: str = STEM) -> str:
    return f"{stem}-ratios.png"


def render_page(results: dict, template: str | None = None, stem: str = STEM) -> str:
    """``page.md`` with every ``<!-- name -->`` marker replaced by generated Markdown (its JSON and plot
    named after ``stem``)."""
    page = template if template is not None else PAGE.read_text()
    parts = {"header": header_lines(results, stem), "targets": targets_table(results)}
    parts |= {f"table:{name}": lines for name, lines in section_tables(results).items()}
    parts["plot"] = [f"![ours against each anchor, median and interquartile range]({plot_name(stem)})"]
    for name, lines in parts.items():
        marker = f"<!-- {name} -->"
        if marker not in page:
            raise ValueError(f"the page template has no {marker} marker")
        page = page.replace(marker, "\n".join(lines))
    return page


def ratios(results: dict) -> list[tuple[str, Ratio]]:
    """Every (subject, anchor) ratio of every comparison, in each mode, with its label."""
    out = []
    for c in results["comparisons"]:
        for subject, anchor in c["pairs"]:
            if row_of(c, subject) is None or row_of(c, anchor) is None:
                continue
            for mode in c["modes"]:
                label = f"{c['name']}: {subject} vs {anchor} ({MODE_NAMES[mode]})"
                out.append((label, speedup(c, subject, anchor, mode)))
    return out


def plot(results: dict, path: Path) -> None:
    """Horizontal chart of every ours-vs-anchor ratio: median, interquartile range, 1.0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = ratios(results)
    colours = {"inference": "tab:blue", "training": "tab:orange"}
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(items) + 1.5))
    ys = list(range(len(items)))[::-1]
    for y, (label, r) in zip(ys, items):
        colour = colours["training" if label.endswith("(training)") else "inference"]
        ax.errorbar(r.median, y, xerr=[[r.median - r.low], [r.high - r.median]], fmt="o", color=colour, capsize=3)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(ys, [label for label, _ in items], fontsize=7)
    ax.set_xlabel("speed-up, log scale (median of per-round ratios; bars: interquartile range)")
    ax.set_title(f"{results['meta']['command']}, {results['meta']['date']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_docs(results: dict, directory: Path, template: str | None = None, stem: str = STEM) -> Path:
    """Write ``STEM.md``, ``STEM.json`` and the plot ``STEM-ratios.png`` into ``directory``; return the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, directory / plot_name(stem))
    page = directory / f"{stem}.md"
    page.write_text(render_page(results, template, stem))
    return page


def progress_lines(comparison: dict) -> list[str]:
    """What one comparison measured, row by row and mode by mode (printed as the run goes)."""
    lines = [f"== {comparison['name']}"]
    for row in comparison["rows"]:
        for mode in comparison["modes"]:
            work, seconds = row["work"][mode], statistics.median(row["seconds"][mode])
            lines.append(
                f"  {row['label']:<24} {mode:<5} {seconds:8.4f} s  tokens {work['tokens']:>8,}  "
                f"GFLOP {call_flops(row, mode) / 1e9:8.3f}  matmul share "
                f"{share(comparison, row['label'], mode).as_share()}"
            )
    return lines
