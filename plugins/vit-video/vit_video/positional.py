"""Fixed positional tables of the video models.

* :func:`sincos_3d`: the Simple ViT sin-cos table (arXiv 2205.01580) extended to a
  ``(frames, height, width)`` grid: six equal parts (sin and cos of column, row and frame).
* :func:`sinusoidal_1d`: the Transformer's interleaved sin / cos table (arXiv 1706.03762) over a
  flat token sequence, as CCT's ``positional_embedding="sine"`` uses it (arXiv 2104.05704).
"""

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


def sinusoidal_1d(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """A fixed ``(length, dim)`` table: channel ``i`` of position ``p`` is ``sin`` (even ``i``) or
    ``cos`` (odd ``i``) of ``p / base ** (2 * (i // 2) / dim)``."""
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    pair_index = torch.arange(dim, dtype=torch.float64) // 2
    angles = position / base ** (2 * pair_index / dim)
    table = torch.where(torch.arange(dim) % 2 == 0, angles.sin(), angles.cos())
    return table.float()
