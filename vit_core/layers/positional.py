"""Positional embeddings: learned on a grid, fixed sin-cos, and factorized per axis.

* :class:`LearnedPositionalEmbedding`: one vector per grid cell (ViT, arXiv 2010.11929).  Inputs
  smaller than the grid the model was built for use the matching top-left window of the grid,
  so a patch keeps the embedding of its row and column (not the first N rows of a flat table).
* :func:`sincos_2d`: fixed 2-D sin-cos table (Simple ViT, arXiv 2205.01580).
* :func:`sinusoidal_1d`: the Transformer's interleaved sin / cos table over a flat sequence
  (arXiv 1706.03762), as CCT's ``positional_embedding="sine"`` uses it (arXiv 2104.05704).
* :class:`FactorizedPositionalEmbedding`: a sum of per-axis learned tables indexed by each
  token's grid coordinates (NaViT, arXiv 2307.06304), for any resolution and dropped tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vit_core.validation import check_divisible, check_positive_int


class LearnedPositionalEmbedding(nn.Module):
    """A learned ``(*grid, dim)`` table; ``forward(grid)`` returns the ``(prod(grid), dim)`` window."""

    def __init__(self, grid: Sequence[int], dim: int, *, init_std: float = 0.02) -> None:
        super().__init__()
        self.grid = tuple(check_positive_int("grid", g) for g in grid)
        self.weight = nn.Parameter(torch.randn(*self.grid, dim) * init_std)

    dynamic: bool = False
    """Resample the table to every other grid (timm's ``dynamic_img_size``) instead of taking a window."""
    interpolation: str = "bicubic"

    def forward(self, grid: Sequence[int]) -> Tensor:
        if self.dynamic and tuple(grid) != self.grid:
            return resample_grid(self.weight, grid, self.interpolation).reshape(-1, self.weight.shape[-1])
        return grid_window(self.weight, grid)

    @torch.no_grad()
    def resize(self, grid: Sequence[int]) -> None:
        """Replace the table by its resampling to ``grid`` (timm's ``set_input_size``)."""
        grid = tuple(check_positive_int("grid", g) for g in grid)
        if grid != self.grid:
            self.weight = nn.Parameter(resample_grid(self.weight, grid, self.interpolation))
            self.grid = grid


INTERPOLATIONS = ("bicubic", "bilinear")


def resample_grid(table: Tensor, grid: Sequence[int], mode: str = "bicubic", *, antialias: bool = False) -> Tensor:
    """A ``(*old_grid, dim)`` 2-D table resampled to ``(*grid, dim)``, computed in float32, in ``table``'s dtype.

    Each axis is scaled on its own (``align_corners=False``), so non-square grids keep rows as rows
    and columns as columns; the same grid gives the table back unchanged.  ``antialias=True`` uses
    the antialiased (PIL-style) kernel, as timm does when it loads a checkpoint at another size.
    """
    grid = tuple(grid)
    if mode not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {mode!r}")
    if table.ndim != 3 or len(grid) != 2:
        raise ValueError(f"positions resample on 2-D grids; got a table of grid {tuple(table.shape[:-1])} -> {grid}")
    if grid == tuple(table.shape[:-1]):
        return table
    maps = table.permute(2, 0, 1).unsqueeze(0).float()
    resampled = nn.functional.interpolate(maps, size=grid, mode=mode, align_corners=False, antialias=antialias)
    return resampled.squeeze(0).permute(1, 2, 0).to(table.dtype)


class FixedPositionalEmbedding(nn.Module):
    """A fixed ``(*grid, dim)`` table (not a parameter, not saved); ``forward(grid)`` as above."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table, persistent=False)

    def forward(self, grid: Sequence[int]) -> Tensor:
        return grid_window(self.table, grid)


def grid_window(table: Tensor, grid: Sequence[int]) -> Tensor:
    """The top-left ``grid`` window of a ``(*full_grid, dim)`` table, flattened to ``(prod(grid), dim)``."""
    grid, full = tuple(grid), tuple(table.shape[:-1])
    if len(grid) != len(full) or any(g > m for g, m in zip(grid, full)):
        raise ValueError(f"patch grid {grid} is larger than the positional grid {full}")
    if grid != full:
        table = table[tuple(slice(0, g) for g in grid)]
    return table.reshape(-1, table.shape[-1])


def sincos_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed ``(height, width, dim)`` table: ``[sin(x w), cos(x w), sin(y w), cos(y w)]`` per cell."""
    check_divisible("dim", dim, "4 (the sin-cos table's four parts)", 4)
    quarter = dim // 4
    omega = temperature ** -(torch.arange(quarter, dtype=torch.float64) / max(quarter - 1, 1))
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    x = x.reshape(-1, 1) * omega
    y = y.reshape(-1, 1) * omega
    table = torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1).float()
    return table.reshape(height, width, dim)


class FactorizedPositionalEmbedding(nn.Module):
    """Sum of one learned table per axis, indexed by integer coordinates ``(tokens, axes)``."""

    def __init__(self, grid: Sequence[int], dim: int, *, init_std: float = 0.02) -> None:
        super().__init__()
        self.grid = tuple(check_positive_int("grid", g) for g in grid)
        self.tables = nn.ParameterList(nn.Parameter(torch.randn(g, dim) * init_std) for g in self.grid)

    def forward(self, coords: Tensor) -> Tensor:
        out = self.tables[0][coords[:, 0]]
        for axis in range(1, len(self.grid)):
            out = out + self.tables[axis][coords[:, axis]]
        return out


def grid_coordinates(grid: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Row-major integer coordinates of every cell of ``grid``, shape ``(prod(grid), len(grid))``."""
    axes = torch.meshgrid(*(torch.arange(g, device=device) for g in grid), indexing="ij")
    return torch.stack(axes, dim=-1).reshape(math.prod(grid), len(grid))


def sinusoidal_1d(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """A fixed ``(length, dim)`` table: channel ``i`` of position ``p`` is ``sin`` (even ``i``) or
    ``cos`` (odd ``i``) of ``p / base ** (2 * (i // 2) / dim)``."""
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    pair_index = torch.arange(dim, dtype=torch.float64) // 2
    angles = position / base ** (2 * pair_index / dim)
    table = torch.where(torch.arange(dim) % 2 == 0, angles.sin(), angles.cos())
    return table.float()
