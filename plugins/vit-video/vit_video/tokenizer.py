"""CCT's convolutional tokenizer (Hassani et al., arXiv 2104.05704), with 3-D convolutions for video.

Instead of cutting patches, CCT embeds the input with ``conv -> ReLU -> max-pool`` stages; every
cell of the last feature map becomes a token.  For video the kernels, strides and paddings are
3-D: a frame part and a (square) spatial part.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

Triple = tuple[int, int, int]


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or max-pool (dilation 1, floor rounding) along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


class ConvTokenizer3D(nn.Module):
    """``(batch, channels, frames, height, width) -> (batch, tokens, dim)`` through conv stages.

    Args:
        channels: input channels.
        dim: output channels of the last stage (the token width).
        n_conv_layers: number of stages; the inner ones have ``in_planes`` channels.
        kernel, stride, padding: the convolutions' ``(frame, spatial, spatial)`` geometry.
        pool_kernel, pool_stride, pool_padding: the max-pools' geometry.
    """

    def __init__(
        self,
        channels: int,
        dim: int,
        *,
        n_conv_layers: int,
        kernel: Triple,
        stride: Triple,
        padding: Triple,
        pool_kernel: Triple,
        pool_stride: Triple,
        pool_padding: Triple,
        in_planes: int = 64,
    ) -> None:
        super().__init__()
        widths = [channels] + [in_planes] * (n_conv_layers - 1) + [dim]
        self.geometry = (kernel, stride, padding, pool_kernel, pool_stride, pool_padding)
        self.stages = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    conv=nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                    act=nn.ReLU(),
                    pool=nn.MaxPool3d(pool_kernel, stride=pool_stride, padding=pool_padding),
                )
            )
            for c_in, c_out in itertools.pairwise(widths)
        )
        for stage in self.stages:
            nn.init.kaiming_normal_(stage.conv.weight)

    def output_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        """The ``(frames, height, width)`` token grid for an input of ``size``.

        An entry <= 0 means the input is too small.
        """
        kernel, stride, padding, pool_kernel, pool_stride, pool_padding = self.geometry
        grid = tuple(size)
        for _ in self.stages:
            for k_, s_, p_ in ((kernel, stride, padding), (pool_kernel, pool_stride, pool_padding)):
                grid = tuple(_out_size(n, k, s, p) for n, k, s, p in zip(grid, k_, s_, p_, strict=True))
                if min(grid) <= 0:
                    return grid
        return grid

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x.flatten(2).transpose(1, 2)
