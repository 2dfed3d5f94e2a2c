"""Peak memory increase of a call, measured in the calling process: resident memory on CPU (Linux
``/proc``), allocated device memory on CUDA.

``getrusage``'s ``ru_maxrss`` is useless here: a child keeps its parent's high-water mark across
``exec``, so a subprocess started by a large benchmark process reports the parent's peak.  We
reset this process's high-water mark (``/proc/self/clear_refs``) and read ``VmHWM`` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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
