"""Random draws that differ across the processes of a distributed run, even when every process
was seeded alike (``torch.manual_seed(0)`` in each, a common way to build identical models).

Masks (MAE, SimMIM, MPP, MP3) and augmentation parameters come from one generator per device,
seeded on first use from the process's global generator and its rank: runs stay reproducible
under ``torch.manual_seed``, every step draws afresh, and two ranks never share a mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vit_ssl.distributed import rank

_RANK_STRIDE = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio): spreads ranks over seed space


class RankedGenerator:
    """One ``torch.Generator`` per device, seeded from the global RNG and the process rank."""

    def __init__(self) -> None:
        self._generators: dict[torch.device, torch.Generator] = {}

    def get(self, device: torch.device | str) -> torch.Generator:
        device = torch.device(device)
        generator = self._generators.get(device)
        if generator is None:
            base = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator(device=device)
            generator.manual_seed((base + rank() * _RANK_STRIDE) % 2**63)
            self._generators[device] = generator
        return generator

    def rand(self, shape: Sequence[int], device: torch.device | str) -> Tensor:
        return torch.rand(tuple(shape), generator=self.get(device), device=device)

    def randint(self, high: int, shape: Sequence[int], device: torch.device | str) -> Tensor:
        return torch.randint(0, high, tuple(shape), generator=self.get(device), device=device)

    def __deepcopy__(self, memo: dict) -> RankedGenerator:
        return RankedGenerator()  # a copy (e.g. an EMA teacher) draws its own numbers
