"""The bare training step's images/s (forward, backward, AdamW; no data, no logging): what a data pipeline must
keep up with, and the throughput a benchmark page reports beside its run."""

from __future__ import annotations

import time

import torch
from torch import nn


def training_rate(
    model: nn.Module, x: torch.Tensor, classes: int, steps: int, *, warmup: int = 1, bf16: bool = False
) -> float:
    """Images/s of ``model``'s training step on the batch ``x`` (random labels below ``classes``), the mean of
    ``steps`` steps after ``warmup``; ``bf16``: under CPU bfloat16 autocast."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, classes, (len(x),))
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return len(x) / (sum(times[warmup:]) / steps)
