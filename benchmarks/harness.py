"""Fair timing on a shared machine: interleaved rounds, warm-up, medians, busy rounds discarded.

Implementations are timed in one process, A B A B ..., so drifts (thermal, frequency, other
tenants) hit all of them alike.  A round during which other processes used the CPU (the
machine's busy time, from /proc/stat, exceeds this process's own CPU time by more than
``busy_tolerance`` of a core) is discarded and repeated, up to a limit.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


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


@dataclass
class Timing:
    """Per-implementation seconds of each kept round."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    discarded: int = 0

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])


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
    while min(len(v) for v in timing.rounds.values()) < rounds:
        for name, fn in fns.items():
            busy0, own0, start = _machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            busy1, own1 = _machine_busy_seconds(), _own_cpu_seconds()
            foreign = None if busy0 is None or busy1 is None else (busy1 - busy0) - (own1 - own0)
            if foreign is not None and foreign > busy_tolerance * elapsed and timing.discarded < max_discards:
                timing.discarded += 1
                continue
            timing.rounds[name].append(elapsed)
    return timing
