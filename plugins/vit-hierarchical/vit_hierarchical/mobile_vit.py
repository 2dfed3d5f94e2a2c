"""MobileViT: "Light-weight, General-purpose, and Mobile-friendly Vision Transformer" (Mehta and
Rastegari, arXiv 2110.02178).

What the paper adds to a MobileNetV2 (inverted residual) network: the MobileViT block.  A
convolution encodes local context; the map is cut into ``patch_size`` patches and a transformer
attends, for each position inside a patch, across all patches (so every pixel sees the whole
image at ``1 / (ph pw)`` of the cost); the result is projected back, concatenated with the
block's input and fused by a convolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_core.layers import Transformer
from vit_core.validation import check_odd_kernel, check_positive_int, check_positive_ints, check_probability
from vit_hierarchical.conv import ConvNormAct, InvertedResidual
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, Stage
from vit_hierarchical.validation import as_pair, conv_side, per_stage
from vit_hierarchical.windows import grid_merge, grid_partition

WIDTHS = 11
"""Entries of ``channels``: stem, then the outputs of the 10 blocks and of the final 1x1 convolution."""


class MobileViTBlock(nn.Module):
    """Local conv -> 1x1 to ``dim`` -> transformer across patches (per in-patch position) -> 1x1
    back -> concatenate with the input -> conv to ``dim_out``, on a ``(b, h, w, c)`` map."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        *,
        dim: int,
        depth: int,
        mlp_dim: int,
        kernel: int,
        patch_size: tuple[int, int],
        heads: int,
        dim_head: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.local = ChannelsLast(nn.Sequential(ConvNormAct(dim_in, dim_in, kernel), ConvNormAct(dim_in, dim, 1)))
        self.transformer = Transformer(
            dim, depth, heads, dim_head, mlp_dim, dropout, final_norm=False, activation=nn.SiLU
        )
        self.project = ChannelsLast(ConvNormAct(dim, dim_in, 1))
        self.fuse = ChannelsLast(ConvNormAct(2 * dim_in, dim_out, kernel))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1], x.shape[2]
        group = (h // self.patch_size[0], w // self.patch_size[1])
        y = self.local(x)
        y = grid_merge(self.transformer(grid_partition(y, group)), group, (h, w))
        return self.fuse(torch.cat((self.project(y), x), dim=-1))


def mv2(dim_in: int, dim_out: int, stride: int, expansion: int) -> ChannelsLast:
    """MobileNetV2's inverted residual (SiLU, no biases; no expansion convolution at ``expansion=1``)."""
    hidden = dim_in * expansion
    return ChannelsLast(InvertedResidual(dim_in, dim_out, hidden_dim=hidden, stride=stride, expand=expansion != 1))


class MobileViT(HierarchicalModel):
    """MobileViT over ``(batch, in_channels, height, width)`` images; arguments as vit-pytorch's
    ``mobile_vit.MobileViT``.

    ``channels`` is the list of 11 widths: the stem, the ten blocks' outputs and the final 1x1
    convolution (``[16, 32, 48, 48, 64, 64, 80, 80, 96, 96, 384]`` for MobileViT-XS); ``dims``
    and ``depths`` the width and depth of the transformers of the three MobileViT blocks.  The
    number of image channels is ``in_channels`` (``channels`` was taken by the width list).
    Five stages halve the map (reductions 2 .. 32; the first keeps the stem's); the last three
    stages' maps must be divisible by ``patch_size``.  ``image_size`` is the size the model is
    meant for; any size that fits the arithmetic is accepted.
    """

    channels_arg = "in_channels"

    def __init__(
        self,
        image_size: int | tuple[int, int],
        dims: tuple[int, int, int] | list[int],
        channels: tuple[int, ...] | list[int],
        num_classes: int,
        expansion: int = 4,
        kernel_size: int = 3,
        patch_size: int | tuple[int, int] = (2, 2),
        depths: tuple[int, int, int] | list[int] = (2, 4, 3),
        *,
        in_channels: int = 3,
        heads: int = 4,
        dim_head: int = 8,
        dropout: float = 0.0,
    ) -> None:
        size = as_pair("image_size", image_size)
        dims = per_stage("dims", dims, 3, check=check_positive_int, of="MobileViT block")
        depths = per_stage("depths", depths, 3, check=check_positive_int, of="MobileViT block")
        if not isinstance(channels, (tuple, list)) or len(channels) != WIDTHS:
            raise ValueError(
                f"channels must be a list of {WIDTHS} widths (stem, ten blocks, final 1x1 conv), got {channels!r}"
                + ("; the image's channel count is in_channels" if isinstance(channels, int) else "")
            )
        for width in channels:
            check_positive_int("channels", width)
        check_positive_ints(expansion=expansion, in_channels=in_channels, heads=heads, dim_head=dim_head)
        check_odd_kernel("kernel_size", kernel_size)
        check_probability("dropout", dropout)
        patch = as_pair("patch_size", patch_size)
        super().__init__(channels=in_channels, rule=self._side_problem)
        self.image_size, self.patch_size = size, patch
        c = list(channels)
        self.widths = tuple(c)
        self.stem = ConvNormAct(in_channels, c[0], 3, stride=2)

        def vit_block(i: int, dim_in: int, dim_out: int, mlp_mult: int) -> MobileViTBlock:
            return MobileViTBlock(
                dim_in,
                dim_out,
                dim=dims[i],
                depth=depths[i],
                mlp_dim=dims[i] * mlp_mult,
                kernel=kernel_size,
                patch_size=self.patch_size,
                heads=heads,
                dim_head=dim_head,
                dropout=dropout,
            )

        self.stages = nn.ModuleList(
            [
                Stage([mv2(c[0], c[1], 1, expansion)], dim=c[1], reduction=2),
                Stage(
                    [mv2(c[1], c[2], 2, expansion), mv2(c[2], c[3], 1, expansion), mv2(c[3], c[3], 1, expansion)],
                    dim=c[3],
                    reduction=4,
                ),
                Stage([mv2(c[3], c[4], 2, expansion), vit_block(0, c[4], c[5], 2)], dim=c[5], reduction=8),
                Stage([mv2(c[5], c[6], 2, expansion), vit_block(1, c[6], c[7], 4)], dim=c[7], reduction=16),
                Stage(
                    [
                        mv2(c[7], c[8], 2, expansion),
                        vit_block(2, c[8], c[9], 4),
                        ChannelsLast(ConvNormAct(c[9], c[10], 1)),
                    ],
                    dim=c[10],
                    reduction=32,
                ),
            ]
        )
        self.build_head(num_classes, head_bias=False)

    def stage_sides(self, side: int) -> list[int]:
        """Map side of each of the five stages."""
        sides = [conv_side(side, 3, 2, 1)]
        for _ in range(4):
            sides.append(conv_side(sides[-1], 3, 2, 1))
        return sides

    def _side_problem(self, side: int, axis: int) -> str | None:
        sides = self.stage_sides(side)
        patch = self.patch_size[axis]
        if all(s >= 1 and s % patch == 0 for s in sides[2:]):
            return None
        return (
            f"the maps of the MobileViT blocks must be divisible by patch_size {self.patch_size} "
            f"(they would be {', '.join(map(str, sides[2:]))})"
        )
