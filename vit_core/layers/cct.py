"""Compact Convolutional Transformer pieces (Hassani et al., arXiv 2104.05704), for any number of axes.

CCT replaces patches by a convolutional tokenizer (``conv -> ReLU -> max-pool`` stages; every cell
of the last map becomes a token) and uses encoder layers that LayerNorm the residual stream
after attention.  The 2-D CCT (vit-variants) and the 3-D one (vit-video) share these.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vit_core.layers.attention import Attention
from vit_core.layers.feedforward import FeedForward
from vit_core.layers.packing import SequencePacking
from vit_core.layers.regularization import DropPath
from vit_core.validation import check_non_negative_int, check_positive_int

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


class CCTBlock(nn.Module):
    """CCT's encoder layer: ``x + drop(attn(norm(x)))``, then ``LayerNorm``, then ``x + drop(mlp(x))``.

    Unlike the pre-norm :class:`~vit_core.layers.TransformerBlock`, the MLP sees the normalised
    stream itself (and adds to it), not a normalised copy.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_dim: int,
        *,
        dropout: float,
        attention_dropout: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim // heads, attention_dropout, project_out=True, out_dropout=dropout)
        self.post_attn_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor | None = None, packing: SequencePacking | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.attn_norm(x), mask=mask, packing=packing))
        x = self.post_attn_norm(x)
        return x + self.drop_path(self.ff(x))


def cct_init_weights(module: nn.Module) -> None:
    """CCT's initialisation: truncated-normal linear weights (std 0.02), zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or max-pool (dilation 1, floor rounding) along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def explicit_zero_bias(conv: nn.Conv3d) -> None:
    """Give the bias-free ``conv`` an explicit zero bias, so that it exports to ONNX.

    torch.onnx's translation of ``aten.conv3d`` with ``bias=None`` (onnxscript's ``aten_conv3d``, 0.7.2
    at least) builds the missing bias as an ``Expand`` of zero to shape ``(out_channels, 2)``, not
    ``(out_channels,)``, and onnxruntime's ``Conv`` rejects it ("bias must be a 1D tensor of size
    output_channels"), with graph optimisations or without; ``aten.conv2d`` is translated right.  The
    zeros are a non-persistent buffer: the parameters, the state dict (and so the vit-pytorch weight
    import) and the outputs stay those of the bias-free convolution.
    """
    if conv.bias is None:
        del conv.bias
        conv.register_buffer("bias", conv.weight.new_zeros(conv.out_channels), persistent=False)


GEOMETRY = ("kernel", "stride", "padding", "pool_kernel", "pool_stride", "pool_padding")
"""The parts of a :class:`ConvTokenizer`'s geometry, in its arguments' order."""


def check_conv_geometry(**parts: Sequence[tuple[str, int]]) -> dict[str, tuple[int, ...]]:
    """The tokenizer geometry from named values, one ``(argument name, value)`` per spatial axis and part.

    ``kernel=(("frame_kernel_size", 3), ("kernel_size", 7), ("kernel_size", 7))`` gives ``kernel=(3, 7, 7)``
    (the parts are :data:`GEOMETRY`).  Sizes and strides must be positive, paddings non-negative, and a
    max-pool's padding at most half its kernel (what ``nn.MaxPoolNd`` accepts); errors name the argument.
    """
    out = {}
    for part in GEOMETRY:
        check = check_non_negative_int if part.endswith("padding") else check_positive_int
        out[part] = tuple(check(name, value) for name, value in parts[part])
    for (pad_name, pad), (kernel_name, kernel) in zip(parts["pool_padding"], parts["pool_kernel"], strict=True):
        if pad > kernel // 2:
            raise ValueError(f"{pad_name}={pad} must be at most half of {kernel_name}={kernel}")
    return out


class ConvTokenizer(nn.Module):
    """``(batch, channels, *spatial) -> (batch, tokens, dim)`` through ``conv -> ReLU -> max-pool`` stages.

    Args:
        channels: input channels.
        dim: output channels of the last stage (the token width).
        n_conv_layers: number of stages; the inner ones have ``in_planes`` channels.
        kernel, stride, padding: the convolutions' geometry, one int per spatial axis.
        pool_kernel, pool_stride, pool_padding: the max-pools' geometry (``pooling=False``: no pool).
        activation: apply ReLU after each convolution.
        conv_bias: bias in the convolutions (3-D ones without it get a zero buffer, see
            :func:`explicit_zero_bias`, so that they export to ONNX).
    """

    def __init__(
        self,
        channels: int,
        dim: int,
        *,
        n_conv_layers: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        pool_kernel: Sequence[int],
        pool_stride: Sequence[int],
        pool_padding: Sequence[int],
        in_planes: int = 64,
        pooling: bool = True,
        activation: bool = True,
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        geometry = tuple(tuple(g) for g in (kernel, stride, padding, pool_kernel, pool_stride, pool_padding))
        axes = len(geometry[0])
        if axes not in _CONV or any(len(g) != axes for g in geometry):
            raise ValueError(f"the tokenizer geometry needs one int per spatial axis (1 to 3 axes), got {geometry}")
        self.geometry, self.pooling = geometry, pooling
        widths = [channels] + [in_planes] * (n_conv_layers - 1) + [dim]
        self.stages = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    conv=_CONV[axes](c_in, c_out, geometry[0], stride=geometry[1], padding=geometry[2], bias=conv_bias),
                    act=nn.ReLU() if activation else nn.Identity(),
                    pool=_POOL[axes](geometry[3], stride=geometry[4], padding=geometry[5])
                    if pooling
                    else nn.Identity(),
                )
            )
            for c_in, c_out in itertools.pairwise(widths)
        )
        for stage in self.stages:
            nn.init.kaiming_normal_(stage.conv.weight)
            if axes == 3:
                explicit_zero_bias(stage.conv)

    def output_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        """The token grid for an input of spatial ``size``; an entry <= 0 means the input is too small."""
        kernel, stride, padding, pool_kernel, pool_stride, pool_padding = self.geometry
        steps = [(kernel, stride, padding)] + ([(pool_kernel, pool_stride, pool_padding)] if self.pooling else [])
        grid = tuple(size)
        for _ in self.stages:
            for k_, s_, p_ in steps:
                grid = tuple(conv_output_size(n, k, s, p) for n, k, s, p in zip(grid, k_, s_, p_, strict=True))
                if min(grid) <= 0:
                    return grid
        return grid

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:  # oneDNN convolves a 3-channel NCHW image up to 3x slower than a channels-last one
            x = x.to(memory_format=torch.channels_last)  # .to: explicit strides even for one channel
        for stage in self.stages:
            x = stage(x)
        return x.flatten(2).transpose(1, 2)
