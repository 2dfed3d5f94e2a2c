"""Where CPU tensors' memory comes from: glibc malloc settings for training loops and for measuring memory.

PyTorch takes CPU tensors from ``malloc``.  glibc serves every block above its mmap threshold (at most
32 MiB, moving with the allocation history) with a fresh ``mmap`` and unmaps it on ``free``, so each
activation of that size is page-faulted in afresh at every step: at ViT-B/16, batch 32, a training step
allocates several GB that way, and on the 2-core VM of docs/benchmarks.md the faults took 21% of the step
(13.1 s against 10.4 s with :func:`retain_freed_memory`; 548,000 against 44,000 page faults).  jemalloc and
tcmalloc, which PyTorch's CPU performance guide recommends, keep freed memory for the next step by design;
glibc does once told to.

Measuring memory wants the opposite: :data:`FIXED_MMAP_THRESHOLD` pins the threshold low in a fresh process,
so that large tensors come and go with their pages and the resident set's peak is that of the live tensors.
"""

from __future__ import annotations

import ctypes
import functools

FIXED_MMAP_THRESHOLD = 64 * 1024
"""For memory measurements (``MALLOC_MMAP_THRESHOLD_`` of a fresh process): glibc serves allocations above
this size with ``mmap`` and returns them on free.  Its default threshold moves with the allocation history, so
large tensors may land on the heap and the peak then depends on fragmentation (we saw +-100 MB run to run at
ViT-B/16 batch 32); fixed, the peak is that of the live tensors and repeats to the megabyte."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER = -1
"""``mallopt`` takes an ``int``; glibc stores the trim threshold as a ``size_t``, so -1 means "never"."""


def pinned_threshold_env() -> dict[str, str]:
    """The environment entry that gives a fresh process :data:`FIXED_MMAP_THRESHOLD`."""
    return {"MALLOC_MMAP_THRESHOLD_": str(FIXED_MMAP_THRESHOLD)}


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The running process's glibc, or None where it runs on another C library (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return libc


def retain_freed_memory() -> bool:
    """Make this process's ``malloc`` keep freed memory for reuse: no ``mmap`` per large block, no trimming
    of the heap; the next step's tensors land on pages already mapped.

    For a long-running loop of the same work (``vit train``, ``vit bench``, the benchmarks): the resident set
    then stays at its peak instead of shrinking between steps (it stays flat from the second step on: 1.24 GB
    over 25 steps of ViT-S/16 at batch 8).  Returns whether it took effect (glibc only; elsewhere the
    allocator is left as it is).
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER))


def release_free_memory() -> None:
    """Hand the pages of every freed block back to the system now (glibc's ``malloc_trim``; elsewhere nothing).

    For a process that moves on to different work after :func:`retain_freed_memory` (the benchmarks, between
    comparisons): blocks of one model's sizes rarely fit the next model's tensors, so, kept, they add up (a
    run of 21 models grew to 24 GB and was killed).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
