"""Timing and memory on a shared machine, for ``vit bench`` and the benchmarks (``benchmarks/`` imports it).

Interleaved rounds, warm-up, medians, busy rounds discarded.

Implementations are timed in one process, one call each per round, always in the same order
(A B C A B C ...), so drifts (thermal, frequency, other tenants) hit all of them alike and every
call follows a call of another implementation.  (Reversing the order every other round puts two
calls of one implementation back to back at each round boundary; the second one finds its memory
already mapped and its caches warm: on small cases the median ratio then strayed up to 10% from
the ratio of the medians.)

A round during which other processes used the CPU (the machine's busy time, from /proc/stat, exceeds
this process's own CPU time by more than ``busy_tolerance`` of a core during any call) is discarded
whole and repeated, up to a limit. Comparisons are medians of the per-round ratios: calls of one
round ran seconds apart, under the same conditions.

Peak memory increase of a call is measured in the calling process: resident memory on CPU (Linux
``/proc``), allocated device memory on CUDA.  ``getrusage``'s ``ru_maxrss`` is useless here: a child
keeps its parent's high-water mark across ``exec``, so a subprocess started by a large benchmark process
reports the parent's peak.  We reset this process's high-water mark (``/proc/self/clear_refs``) and read
``VmHWM`` instead.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def _machine_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class Ratio:
    """A speed-up: median and interquartile range of the per-round ratios."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f})"

    def scaled(self, factor: float) -> Ratio:
        return Ratio(self.median * factor, self.low * factor, self.high * factor)

    def as_share(self) -> str:
        return f"{self.median:.0%} ({self.low:.0%}-{self.high:.0%})"


@dataclass
class Timing:
    """Per-implementation seconds of each kept round (index ``i`` of every list is round ``i``)."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    discarded: int = 0

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])

    def speedup(self, name: str, baseline: str) -> Ratio:
        """``baseline``'s time over ``name``'s, round by round (above 1: ``name`` is faster): their
        median and quartiles."""
        ratios = [b / a for a, b in zip(self.rounds[name], self.rounds[baseline])]
        low, _, high = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
        return Ratio(statistics.median(ratios), low, high)


def _foreign_cpu(fn: Callable[[], object]) -> tuple[float, float | None]:
    """Run ``fn``; return its wall time and the CPU seconds other processes used meanwhile."""
    busy0, own0, start = _machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    busy1, own1 = _machine_busy_seconds(), _own_cpu_seconds()
    foreign = None if busy0 is None or busy1 is None else (busy1 - busy0) - (own1 - own0)
    return elapsed, foreign


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    rounds: int = 5,
    warmup: int = 2,
    busy_tolerance: float = 0.3,
    max_discards: int = 20,
) -> Timing:
    """Time each zero-argument callable ``rounds`` times, interleaved, after ``warmup`` calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    timing = Timing({name: [] for name in fns})
    kept = 0
    while kept < rounds:
        times, busy = {}, False
        for name, fn in fns.items():
            times[name], foreign = _foreign_cpu(fn)
            busy = busy or (foreign is not None and foreign > busy_tolerance * times[name])
        if busy and timing.discarded < max_discards:
            timing.discarded += 1
            continue
        for name, seconds in times.items():
            timing.rounds[name].append(seconds)
        kept += 1
    return timing


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_increase(fn: Callable[[], object], device: str = "cpu") -> int:
    """Bytes by which memory peaked above its size before ``fn()``: the resident set on CPU, the
    memory allocated by tensors on CUDA."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - before)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_bytes("VmRSS")
    fn()
    return max(0, _status_bytes("VmHWM") - before)
