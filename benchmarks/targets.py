"""The speed (and memory) targets the issues set, declared once; docs/benchmarks.md prints one row
per target and matching comparison: the target, what was measured, met or not.

A plugin's benchmark adds its targets by appending to :data:`TARGETS` (with the comparison they
read, in ``benchmarks/cases.py``); a target no comparison of the run matches still gets its row,
"not measured in this run".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from benchmarks.harness import Ratio, Timing
from benchmarks.work import PRODUCTS_ALONE

METRICS = (
    "speedup", "share", "useful_share", "padded_tokens", "mask_elements", "memory_ratio", "memory_growth",
    "seconds_to_accuracy", "loop_overhead",
)  # fmt: skip


@dataclass(frozen=True)
class Target:
    """``metric`` of ``subject`` (against ``anchor``) in ``mode``, for every comparison of
    ``section`` (or only those whose ``params["case"]`` is in ``cases``), bounded by ``at_least``
    (>=), ``above`` (>) or ``at_most`` (<=).  ``on``: which statistic of a ratio is bounded,
    ``"median"`` or ``"low"`` (its first quartile: "the interquartile range above 1.0").

    Metrics: ``speedup`` (subject's speed over anchor's, per-round medians), ``share`` (the
    subject's counted FLOP rate over the matrix-product probe's, same rounds), ``useful_share``
    (the comparison's useful FLOPs, those of its row without padding, at the subject's speed, over
    the probe's rate), ``padded_tokens`` (tokens the subject processes beyond the useful row's),
    ``mask_elements`` (attention-mask elements it builds), ``memory_ratio`` (its training peak over
    the anchor's), ``memory_growth`` (the exponent of peak memory in tokens across the section's
    comparisons: 1 is linear, 2 quadratic); for ``vit train`` runs (section ``"train"``, kept under
    ``results["training"]``): ``seconds_to_accuracy`` (seconds into training at which the test accuracy
    first reached 0.90, plus the command's start-up before training; never reached counts as
    infinite) and ``loop_overhead`` (the loop's time over its bare steps, minus 1)."""

    issue: int
    text: str
    section: str
    metric: str
    mode: str | None = None
    subject: str = "ours"
    anchor: str | None = None
    cases: tuple[str, ...] | None = None
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    on: str = "median"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.on not in ("median", "low"):
            raise ValueError(f"on must be 'median' or 'low', got {self.on!r}")
        if (self.at_least, self.above, self.at_most).count(None) != 2:
            raise ValueError(f"{self.text!r}: give exactly one of at_least, above, at_most")

    def met(self, value: float) -> bool:
        if self.at_least is not None:
            return value >= self.at_least
        if self.above is not None:
            return value > self.above
        return value <= self.at_most


def _both(issue: int, text: str, **kwargs: object) -> list[Target]:
    return [Target(issue, f"{text}, {mode}", mode=mode, **kwargs) for mode in ("inference", "training")]


def _mode(target: Target) -> str | None:
    return {"inference": "infer", "training": "train"}.get(target.mode, target.mode)


VIT_CASES = ("ViT-S/16", "ViT-B/16", "SimpleViT-S/16", "SimpleViT-B/16")

TARGETS: list[Target] = [
    *_both(5, "ViT and SimpleViT eager >= 1.0x timm at every case", section="vit", metric="speedup",
           anchor="timm", cases=VIT_CASES, at_least=1.0),
    Target(5, "training peak memory no higher than timm's", "vit", "memory_ratio", anchor="timm", cases=VIT_CASES,
           at_most=1.0),
    Target(5, "ViT-B/16 training >= 90% of the matrix-product rate", "vit", "share", "train", cases=("ViT-B/16",),
           at_least=0.9),
    Target(17, "ViT-B/16 training >= 1.05x timm", "vit", "speedup", "train", anchor="timm", cases=("ViT-B/16",),
           at_least=1.05),
    Target(17, "ViT-B/16 training vs timm: interquartile range above 1.0", "vit", "speedup", "train", anchor="timm",
           cases=("ViT-B/16",), above=1.0, on="low"),
    Target(5, "ViT-S/16 batch 32 training under torch.compile >= 1.1x timm eager", "compile", "speedup", "train",
           subject="ours+compile", anchor="timm", cases=("ViT-S/16",), at_least=1.1),
    *_both(5, "torch.compile faster than our eager", section="compile", metric="speedup", subject="ours+compile",
           anchor="ours", at_least=1.0),
    *_both(5, "NaViT >= 2x na_vit@1024", section="navit", metric="speedup", anchor="na_vit@1024", at_least=2.0),
    *_both(5, "NaViT >= 1.5x na_vit@256 (its fastest packing length)", section="navit", metric="speedup",
           anchor="na_vit@256", at_least=1.5),
    *_both(17, "NaViT useful work >= 90% of the matrix-product rate", section="navit", metric="useful_share",
           at_least=0.9),
    *_both(17, "NaViT zero padding", section="navit", metric="padded_tokens", at_most=0),
    *_both(17, "NaViT no dense attention mask", section="navit", metric="mask_elements", at_most=0),
    Target(5, "long sequences: peak memory linear in tokens (exponent; quadratic is 2)", "long", "memory_growth",
           "train", at_most=1.2),
    Target(14, "Nystrom trunk: training peak memory linear in tokens (exponent; quadratic is 2)",
           "efficient-trunks", "memory_growth", "train", subject="nystrom", at_most=1.2),
    Target(14, "PatchMergerViT (tokens halved at mid-depth) >= 1.3x a plain ViT, inference", "token-reduction",
           "speedup", "inference", subject="patch-merger", anchor="vit", at_least=1.3),
    Target(14, "ATSViT faster than a plain ViT, inference", "token-reduction", "speedup", "inference",
           subject="ats", anchor="vit", above=1.0),
    Target(16, "vit train vit (defaults, bundled digits) reaches 0.90 test accuracy within 60 s of launch", "train",
           "seconds_to_accuracy", at_most=60.0),
    Target(16, "vit train vit: the loop adds at most 10% over the bare training steps", "train", "loop_overhead",
           at_most=0.10),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reading a run's JSON


def timing(comparison: dict, mode: str) -> Timing:
    """The comparison's per-round seconds in ``mode`` (the probe under ``"probe"``, the ceiling
    row's products alone, where timed, under :data:`PRODUCTS_ALONE`)."""
    rounds = {row["label"]: row["seconds"][mode] for row in comparison["rows"] if mode in row["seconds"]}
    if comparison.get("ceiling"):
        rounds[PRODUCTS_ALONE] = comparison["ceiling"]["seconds"][mode]
    return Timing(rounds | {"probe": comparison["probe"]["seconds"][mode]})


def row_of(comparison: dict, label: str) -> dict | None:
    return next((r for r in comparison["rows"] if r["label"] == label), None)


def call_flops(row: dict, mode: str) -> int:
    """FLOPs counted per call: forward in inference, forward and backward in training."""
    work = row["work"][mode]
    return work["linear_flops"] + work["attention_flops"] + (work["backward_flops"] if mode == "train" else 0)


def speedup(comparison: dict, subject: str, anchor: str, mode: str) -> Ratio:
    return timing(comparison, mode).speedup(subject, anchor)


def share(comparison: dict, label: str, mode: str, flops_of: str | None = None) -> Ratio:
    """FLOP rate of ``label`` (counting the FLOPs of ``flops_of``, default its own) over the probe's
    rate, round by round."""
    probe = comparison["probe"]
    flops = call_flops(row_of(comparison, flops_of or label), mode)
    return timing(comparison, mode).speedup(label, "probe").scaled(flops / probe["flops"])


def ceiling_share(comparison: dict, label: str, mode: str) -> Ratio | None:
    """``label``'s FLOPs at the speed of its matrix products and attention kernels alone, over the
    probe's rate: the most its share could reach were everything else free (``None``: the
    comparison did not time ``label``'s products alone)."""
    ceiling = comparison.get("ceiling")
    if not ceiling or ceiling["label"] != label:
        return None
    flops = call_flops(row_of(comparison, label), mode)
    return timing(comparison, mode).speedup(PRODUCTS_ALONE, "probe").scaled(flops / comparison["probe"]["flops"])


def padded_tokens(comparison: dict, label: str, mode: str) -> int:
    useful = row_of(comparison, comparison["useful"])
    return row_of(comparison, label)["work"][mode]["tokens"] - useful["work"][mode]["tokens"]


def memory_growth(comparisons: list[dict], label: str) -> float | None:
    """Least-squares slope of log(peak memory) on log(tokens) over the comparisons."""
    points = [
        (math.log(c["params"]["tokens"]), math.log(row["peak_memory"]))
        for c in comparisons
        if (row := row_of(c, label)) and row.get("peak_memory")
    ]
    if len(points) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in points), statistics.fmean(p[1] for p in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


@dataclass(frozen=True)
class Outcome:
    target: Target
    where: str
    measured: str
    status: str  # "met", "not met", "not measured in this run"


def _value(target: Target, comparison: dict) -> tuple[float, str] | None:
    mode = _mode(target)
    subject = row_of(comparison, target.subject)
    if subject is None or (mode is not None and mode not in comparison["modes"]):
        return None
    if target.metric in ("speedup", "memory_ratio") and row_of(comparison, target.anchor) is None:
        return None
    if target.metric == "speedup":
        ratio = speedup(comparison, target.subject, target.anchor, mode)
        return getattr(ratio, target.on), str(ratio)
    if target.metric in ("share", "useful_share"):
        flops_of = comparison["useful"] if target.metric == "useful_share" else None
        ratio = share(comparison, target.subject, mode, flops_of)
        ceiling = ceiling_share(comparison, target.subject, mode)
        text = ratio.as_share() + (f"; its products alone: {ceiling.as_share()}" if ceiling else "")
        return getattr(ratio, target.on), text
    if target.metric == "padded_tokens":
        n = padded_tokens(comparison, target.subject, mode)
        return n, f"{n:,} of {subject['work'][mode]['tokens']:,} tokens"
    if target.metric == "mask_elements":
        n = subject["work"][mode]["mask_elements"]
        return n, f"{n:,} elements"
    ours, theirs = subject["peak_memory"], row_of(comparison, target.anchor)["peak_memory"]
    if not ours or not theirs:
        return None
    return ours / theirs, f"{ours / 2**20:,.0f} / {theirs / 2**20:,.0f} MB"


def _training_value(target: Target, run: dict) -> tuple[float, str]:
    if target.metric == "loop_overhead":
        return run["loop_overhead"], f"{run['loop_overhead']:.1%}"
    reached = run["seconds_to_090"]
    if reached is None:
        return math.inf, f"never (final accuracy {run['accuracy']:.3f})"
    startup = run["wall_seconds"] - run["curve"][-1]["seconds"]  # imports, data, model (and the exit)
    return startup + reached, (
        f"{startup + reached:.1f} s from launch ({reached:.1f} s into training; the whole command "
        f"{run['wall_seconds']:.1f} s, final accuracy {run['accuracy']:.3f})"
    )


def evaluate(results: dict, targets: list[Target] = TARGETS) -> list[Outcome]:
    """Every target against the run's comparisons: at least one outcome per target."""
    outcomes = []
    for target in targets:
        if target.section == "train":
            found = []
            for run in results.get("training", []):
                value, text = _training_value(target, run)
                found.append(Outcome(target, run["name"], text, _status(target, value)))
            outcomes += found or [Outcome(target, "-", "-", "not measured in this run")]
            continue
        comparisons = [
            c
            for c in results["comparisons"]
            if c["section"] == target.section and (target.cases is None or c["params"].get("case") in target.cases)
        ]
        found = []
        if target.metric == "memory_growth":
            exponent = memory_growth(comparisons, target.subject)
            if exponent is not None:
                tokens = ", ".join(str(c["params"]["tokens"]) for c in comparisons)
                found.append(Outcome(target, f"{tokens} tokens", f"{exponent:.2f}", _status(target, exponent)))
        else:
            for c in comparisons:
                value = _value(target, c)
                if value is not None:
                    found.append(Outcome(target, c["name"], value[1], _status(target, value[0])))
        outcomes += found or [Outcome(target, "-", "-", "not measured in this run")]
    return outcomes


def _status(target: Target, value: float) -> str:
    return "met" if target.met(value) else "not met"


def _plugin_targets(
    issue: int, section: str, timm_cases: tuple[str, ...], other_cases: tuple[str, ...]
) -> list[Target]:
    """Issues 11 and 12: the models timm has against timm and vit-pytorch, the others against vit-pytorch."""
    return [
        *_both(issue, f"{section} models timm has: eager >= 1.0x timm", section=section, metric="speedup",
               anchor="timm", cases=timm_cases, at_least=1.0),
        *_both(issue, f"{section} models timm has: eager >= 1.2x vit-pytorch", section=section, metric="speedup",
               anchor="vit-pytorch", cases=timm_cases, at_least=1.2),
        Target(issue, f"{section} models timm has: training peak memory no higher than timm's", section,
               "memory_ratio", anchor="timm", cases=timm_cases, at_most=1.0),
        *_both(issue, f"{section}, the other models: eager >= 1.0x vit-pytorch", section=section, metric="speedup",
               anchor="vit-pytorch", cases=other_cases, at_least=1.0),
    ]  # fmt: skip


def _register_plugin_targets() -> None:
    from benchmarks import hierarchical, variants

    for issue, module in ((11, variants), (12, hierarchical)):
        TARGETS.extend(_plugin_targets(issue, module.SECTION, module.TIMM_CASES, module.OTHER_CASES))


_register_plugin_targets()  # vit-variants (benchmarks/variants.py) and vit-hierarchical (benchmarks/hierarchical.py)
