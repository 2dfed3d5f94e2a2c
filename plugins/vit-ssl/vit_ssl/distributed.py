"""The few collective operations the trainers and the evaluation need, no-ops in a single process.

Everything here uses the process group ``torch.distributed`` already holds (as ``torchrun`` and
``init_process_group`` set it up); the plugin never starts processes or picks a backend itself.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """Whether a default process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum_(tensors: list[Tensor]) -> list[Tensor]:
    """Sum each tensor over the processes, in place (one flattened collective for all of them)."""
    if not is_distributed() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return tensors


def all_gather_rows(x: Tensor) -> Tensor:
    """Concatenate, in rank order, the ``x`` of every process along dim 0 (sizes may differ)."""
    if not is_distributed():
        return x
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])
