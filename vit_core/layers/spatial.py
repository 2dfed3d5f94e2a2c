"""2-D helpers shared by the hierarchical models: channel-first norms, depth-wise convolutions,
tokens <-> feature maps, windows, and relative position bias tables.

Window attention with a learned relative position bias follows Swin (Liu et al., arXiv 2103.14030):
every pair of cells of a ``window`` gets the bias of their (row, column) offset, one table entry
per head per offset, added to the attention scores (:meth:`Attention.score_bias`), which keeps
attention on the fused kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.validation import as_tuple, check_positive_int


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a ``(batch, channels, height, width)`` map, at each position."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(check_positive_int("dim", dim)))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class DepthwiseConv2d(nn.Sequential):
    """A depth-wise ``kernel x kernel`` convolution then a point-wise ``1 x 1`` one (separable conv);
    with ``dim_out=None`` only the depth-wise part."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int | None,
        kernel_size: int,
        padding: int | None = None,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        padding = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(dim_in, dim_in, kernel_size, stride=stride, padding=padding, groups=dim_in, bias=bias)
        ]
        if dim_out is not None:
            layers.append(nn.Conv2d(dim_in, dim_out, 1, bias=bias))
        super().__init__(*layers)


def map_to_tokens(x: Tensor) -> Tensor:
    """``(batch, channels, height, width)`` -> ``(batch, height * width, channels)`` (row-major)."""
    return x.flatten(2).transpose(1, 2)


def tokens_to_map(x: Tensor, grid: Sequence[int]) -> Tensor:
    """``(batch, height * width, channels)`` -> ``(batch, channels, height, width)``."""
    h, w = grid
    if x.ndim != 3 or x.shape[1] != h * w:
        raise ValueError(f"tokens must be (batch, {h * w}, channels) for the grid {h}x{w}, got shape {tuple(x.shape)}")
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def window_partition(x: Tensor, window: int | Sequence[int]) -> Tensor:
    """``(batch, height, width, channels)`` -> ``(batch * windows, wh * ww, channels)``, windows row-major."""
    wh, ww = as_tuple("window", window)
    b, h, w, c = x.shape
    if h % wh or w % ww:
        raise ValueError(f"a {h}x{w} map does not split into {wh}x{ww} windows")
    x = x.view(b, h // wh, wh, w // ww, ww, c).transpose(2, 3)
    return x.reshape(b * (h // wh) * (w // ww), wh * ww, c)


def window_merge(x: Tensor, window: int | Sequence[int], grid: Sequence[int]) -> Tensor:
    """Inverse of :func:`window_partition`: ``(batch * windows, wh * ww, channels)`` -> ``(batch, h, w, channels)``."""
    wh, ww = as_tuple("window", window)
    h, w = grid
    rows, cols = h // wh, w // ww
    c = x.shape[-1]
    x = x.view(-1, rows, cols, wh, ww, c).transpose(2, 3)
    return x.reshape(-1, h, w, c)


def relative_position_index(window: int | Sequence[int]) -> Tensor:
    """``(n, n)`` index (``n = wh * ww``) of each cell pair's offset into a ``(2wh-1) * (2ww-1)`` table.

    The pair (query i, key j) gets ``(row_i - row_j + wh - 1) * (2ww - 1) + (col_i - col_j + ww - 1)``.
    """
    wh, ww = as_tuple("window", window)
    rows, cols = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    coords = torch.stack((rows.flatten(), cols.flatten()))
    offsets = coords[:, :, None] - coords[:, None, :]
    return (offsets[0] + wh - 1) * (2 * ww - 1) + (offsets[1] + ww - 1)


class RelativePositionBias(nn.Module):
    """A learned bias per head for every relative offset within a window; ``forward()`` gives the
    ``(heads, n, n)`` bias of all cell pairs, to add to the attention scores."""

    def __init__(self, heads: int, window: int | Sequence[int], init_std: float = 0.02) -> None:
        super().__init__()
        self.window = as_tuple("window", window)
        wh, ww = self.window
        self.heads = check_positive_int("heads", heads)
        self.table = nn.Parameter(torch.randn((2 * wh - 1) * (2 * ww - 1), heads) * init_std)
        self.register_buffer("index", relative_position_index(self.window), persistent=False)

    def forward(self) -> Tensor:
        return self.table[self.index].permute(2, 0, 1)
