"""Convolutional pieces of the hybrid models: conv-BN-activation, squeeze-excitation, the inverted
residual (MobileNetV2's MV2 block, arXiv 1801.04381; MBConv in MaxViT, arXiv 2204.01697) and the
positional encoding generator (CPVT, arXiv 2102.10882).

They take ``(batch, channels, height, width)`` maps; stages wrap them in
:class:`vit_hierarchical.stages.ChannelsLast`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from vit_core.layers import DropPath
from vit_core.validation import check_positive_int

Activation = Callable[[], nn.Module]


class ConvNormAct(nn.Sequential):
    """``Conv2d -> BatchNorm2d -> activation`` (``activation=None``: no activation).

    In eval mode the BatchNorm is an affine map fixed by its running statistics, so it is folded
    into the convolution's weight and bias for the call (the parameters stay as they are): one
    pass over the map fewer per block, e.g. MaxViT-T's 33 BatchNorms, about 10% of its inference.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel: int = 1,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        activation: Activation | None = nn.SiLU,
    ) -> None:
        check_positive_int("dim_in", dim_in)
        check_positive_int("dim_out", dim_out)
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(dim_out)
        self.act = activation() if activation is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(conv_norm(self.conv, self.norm, x))


def conv_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """``norm(conv(x))``; when ``norm`` is a fixed affine map (eval mode, running statistics, learned
    scale and shift), as one convolution: the scale ``weight / sqrt(running_var + eps)`` multiplies
    the filters and the shift joins the bias."""
    if norm.training or norm.running_var is None or norm.weight is None:
        return norm(conv(x))
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1), bias)


class ConvBatchNorm(nn.Sequential):
    """``Conv2d -> BatchNorm2d`` (children ``0`` and ``1``), folded into one convolution in eval mode
    as in :class:`ConvNormAct`."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
        super().__init__(conv, norm)

    def forward(self, x: Tensor) -> Tensor:
        return conv_norm(self[0], self[1], x)


class SqueezeExcitation(nn.Module):
    """Channel gates from the mean of the map (Hu et al., arXiv 1709.01507): ``x * sigmoid(W2 silu(W1 mean(x)))``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.reduce = nn.Linear(dim, check_positive_int("squeeze-excitation width", hidden_dim), bias=False)
        self.act = nn.SiLU()
        self.expand = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.expand(self.act(self.reduce(x.mean(dim=(2, 3))))).sigmoid()
        return x * gate[:, :, None, None]


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depth-wise 3x3 (``stride``) -> [squeeze-excitation] -> project (1x1), each with BatchNorm.

    The residual is added when input and output shapes match (stride 1, ``dim_in == dim_out``);
    ``drop_path`` drops it per sample in training.  ``expand=False`` (MobileNetV2 with expansion
    1) starts at the depth-wise convolution, which then runs on ``dim_in`` channels.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        *,
        hidden_dim: int,
        stride: int = 1,
        activation: Activation = nn.SiLU,
        bias: bool = False,
        expand: bool = True,
        se_dim: int | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        check_positive_int("hidden_dim", hidden_dim)
        if not expand and hidden_dim != dim_in:
            raise ValueError(
                f"without the expansion convolution hidden_dim must equal dim_in={dim_in}, got {hidden_dim}"
            )
        self.expand = ConvNormAct(dim_in, hidden_dim, 1, bias=bias, activation=activation) if expand else nn.Identity()
        self.depthwise = ConvNormAct(
            hidden_dim, hidden_dim, 3, stride=stride, groups=hidden_dim, bias=bias, activation=activation
        )
        self.se = SqueezeExcitation(hidden_dim, se_dim) if se_dim is not None else nn.Identity()
        self.project = ConvNormAct(hidden_dim, dim_out, 1, bias=bias, activation=None)
        self.residual = stride == 1 and dim_in == dim_out
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + self.drop_path(out) if self.residual else out


class PositionEncodingGenerator(nn.Module):
    """CPVT's PEG (arXiv 2102.10882): positions from a depth-wise convolution of the map, added back."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        super().__init__()
        check_positive_int("peg_kernel_size", kernel)
        self.proj = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(x)
