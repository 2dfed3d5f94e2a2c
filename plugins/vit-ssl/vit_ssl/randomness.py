"""Random draws of a distributed run that equal a single process's on the same global batch.

Masks (MAE, SimMIM, MPP, MP3) and augmentation parameters come from one generator per device,
seeded on first use from the process's global generator: runs stay reproducible under
``torch.manual_seed`` and every step draws afresh.  Every draw is per image (the shape's first axis
is the batch).  Under ``torch.distributed`` each of the ``world`` processes draws the rows of the
whole global batch (``world`` times its own) and keeps its own: rows ``rank, rank + world, ...``,
the images ``DistributedSampler`` gives it.  Processes seeded alike (``torch.manual_seed(0)`` in
each, as ``vit train`` does) thus never share a mask, and two processes draw for each image what
one process draws for it: their weights equal a single process's on the same global batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vit_ssl.distributed import rank, world_size


class RankedGenerator:
    """One ``torch.Generator`` per device, seeded from the global RNG; draws this process's rows."""

    def __init__(self) -> None:
        self._generators: dict[torch.device, torch.Generator] = {}

    def get(self, device: torch.device | str) -> torch.Generator | None:
        """This device's generator (``None`` on ``meta``, which draws nothing and holds no generator)."""
        device = torch.device(device)
        if device.type == "meta":
            return None
        generator = self._generators.get(device)
        if generator is None:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))  # the CPU's global RNG: no device sync
            self._generators[device] = generator
        return generator

    def rand(self, shape: Sequence[int], device: torch.device | str) -> Tensor:
        """Uniform ``[0, 1)`` numbers of ``shape`` (``shape[0]``: this process's images)."""
        world = world_size()
        shape = tuple(shape)
        drawn = torch.rand((shape[0] * world, *shape[1:]), generator=self.get(device), device=device)
        return drawn[rank() :: world] if world > 1 else drawn

    def randint(self, high: int, shape: Sequence[int], device: torch.device | str) -> Tensor:
        """Integers in ``[0, high)`` of ``shape`` (``shape[0]``: this process's images)."""
        world = world_size()
        shape = tuple(shape)
        drawn = torch.randint(0, high, (shape[0] * world, *shape[1:]), generator=self.get(device), device=device)
        return drawn[rank() :: world] if world > 1 else drawn

    def __deepcopy__(self, memo: dict) -> RankedGenerator:
        return RankedGenerator()  # a copy (e.g. an EMA teacher) draws its own numbers
