"""Attention restricted to groups of tokens of a channels-last map ``(batch, height, width, dim)``.

Two ways of grouping, both of ``(gh, gw)`` tokens:

* ``"window"``: non-overlapping windows of adjacent tokens (local attention: Swin, Twins' LSA,
  MaxViT's block attention, CrossFormer's short-distance attention);
* ``"grid"``: tokens spread evenly over the whole map, at a stride of ``(height / gh,
  width / gw)`` (MaxViT's grid attention, CrossFormer's long-distance attention): every group
  sees the whole image, sparsely.

:class:`GroupedBlock` runs any token block (a core :class:`~vit_core.layers.TransformerBlock`)
on each group and puts the tokens back.
"""

from __future__ import annotations

from torch import Tensor, nn

from vit_core.layers.positional import LearnedPositionalEmbedding
from vit_core.layers.spatial import window_merge, window_partition
from vit_core.validation import check_choice

GROUPINGS = ("window", "grid")


def grid_partition(x: Tensor, group: tuple[int, int]) -> Tensor:
    """``(b, h, w, c)`` -> ``(b * h/gh * w/gw, gh * gw, c)``: group ``(i, j)`` holds the tokens at
    ``(i + k * h/gh, j + l * w/gw)``."""
    b, h, w, c = x.shape
    gh, gw = group
    x = x.view(b, gh, h // gh, gw, w // gw, c).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, gh * gw, c)


def grid_merge(groups: Tensor, group: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`grid_partition`."""
    (h, w), (gh, gw) = size, group
    c = groups.shape[-1]
    x = groups.view(-1, h // gh, w // gw, gh, gw, c).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(-1, h, w, c)


def partition(x: Tensor, group: tuple[int, int], grouping: str) -> Tensor:
    """Tokens of ``x`` ``(b, h, w, c)`` grouped as ``(groups, gh * gw, c)``."""
    if grouping == "grid":
        return grid_partition(x, group)
    return window_partition(x, group)


def merge(groups: Tensor, group: tuple[int, int], size: tuple[int, int], grouping: str) -> Tensor:
    """Inverse of :func:`partition`: ``(groups, gh * gw, c)`` -> ``(b, h, w, c)``."""
    if grouping == "grid":
        return grid_merge(groups, group, size)
    return window_merge(groups, group, size)


class GroupedBlock(nn.Module):
    """``block`` applied to every ``(gh, gw)`` group of a ``(b, h, w, c)`` map (see the module docstring).

    ``pos_embed``: learned positions of a group's tokens, shared by every group and added before
    ``block`` (NesT's per-hierarchy positions); ``None``: none."""

    def __init__(
        self,
        block: nn.Module,
        group: tuple[int, int],
        grouping: str = "window",
        pos_embed: LearnedPositionalEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.block = block
        self.group = tuple(group)
        self.grouping = check_choice("grouping", grouping, GROUPINGS)
        self.pos_embed = pos_embed

    def forward(self, x: Tensor) -> Tensor:
        size = (x.shape[1], x.shape[2])
        groups = partition(x, self.group, self.grouping)
        if self.pos_embed is not None:
            groups = groups + self.pos_embed(self.group)
        return merge(self.block(groups), self.group, size, self.grouping)
