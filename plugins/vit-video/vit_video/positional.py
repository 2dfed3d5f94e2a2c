"""The fixed positional table of the 3-D SimpleViT: the Simple ViT sin-cos table (arXiv 2205.01580)
extended to a ``(frames, height, width)`` grid, six equal parts (sin and cos of column, row and frame)."""

from __future__ import annotations

import torch
from torch import Tensor

from vit_core.validation import check_positive_int


def sincos_3d(frames: int, height: int, width: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """A fixed ``(frames, height, width, dim)`` table.

    Each cell holds ``[sin(x w), cos(x w), sin(y w), cos(y w), sin(t w), cos(t w)]`` with ``dim // 6``
    frequencies ``w`` per part (column ``x``, row ``y``, frame ``t``), then zeros up to ``dim``.
    """
    if check_positive_int("dim", dim) < 6:
        raise ValueError(f"dim must be at least 6 for the 3-D sin-cos table (six parts), got {dim}")
    parts = dim // 6
    omega = temperature ** -(torch.arange(parts, dtype=torch.float64) / max(parts - 1, 1))
    t, y, x = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (frames, height, width)), indexing="ij")
    angles = [axis.reshape(-1, 1) * omega for axis in (x, y, t)]
    table = torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1)
    table = torch.nn.functional.pad(table, (0, dim - 6 * parts))
    return table.float().reshape(frames, height, width, dim)
