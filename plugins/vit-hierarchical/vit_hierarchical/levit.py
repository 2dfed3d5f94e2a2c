"""LeViT: "a Vision Transformer in ConvNet's Clothing for Faster Inference" (Graham et al., arXiv 2104.01136).

What the paper changes: a convolutional stem shrinks the image 16 times; stages of attention
and MLP blocks on the resulting small map use BatchNorm after every projection instead of
LayerNorm, no norm before the blocks, Hardswish in the MLPs, an activation before the
attention's output projection, keys narrower than values, and a learned attention bias per head
and (absolute) offset between query and key positions instead of positional embeddings.  Between
stages a "shrink attention" block takes its queries on a stride-2 subsampled map, halving the
resolution and widening.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from vit_core.layers import FeedForward, TransformerBlock
from vit_core.validation import check_non_negative_int, check_positive_int, check_positive_ints, check_probability
from vit_hierarchical.attention import MapProjectionAttention
from vit_hierarchical.conv import ConvBatchNorm
from vit_hierarchical.stages import HierarchicalModel, Stage, TokenMapBlock
from vit_hierarchical.validation import as_pair, conv_side, exact_size, per_stage

STEM_WIDTHS = (32, 64, 128)


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the channels of ``(..., channels)`` tokens (BatchNorm2d of the token map)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def offset_index(grid: tuple[int, int], stride: int) -> Tensor:
    """``(queries, keys)`` index of ``|dy| * width + |dx|`` between query positions (every
    ``stride``-th cell of ``grid``) and key positions (every cell)."""
    h, w = grid
    ky, kx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    qy, qx = ky[::stride, ::stride].reshape(-1), kx[::stride, ::stride].reshape(-1)
    ky, kx = ky.reshape(-1), kx.reshape(-1)
    return (qy[:, None] - ky[None]).abs() * w + (qx[:, None] - kx[None]).abs()


class LeViTAttention(MapProjectionAttention):
    """BatchNorm-ed 1x1 projections (queries every ``stride``-th position), keys ``dim_key`` and values
    ``dim_value`` wide per head, an offset bias per head, an activation then a BatchNorm-ed output
    projection to ``dim_out`` (GELU as vit-pytorch; the paper's is Hardswish).  ``grid`` is the
    ``(h, w)`` map the layer is built for."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        dim_key: int,
        dim_value: int,
        grid: tuple[int, int],
        dim_out: int,
        stride: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(dim, heads, dim_key, dropout, dim_value=dim_value)
        self.stride, self.grid = stride, grid
        self.to_q = ConvBatchNorm(
            nn.Conv2d(dim, heads * dim_key, 1, stride=stride, bias=False), nn.BatchNorm2d(heads * dim_key)
        )
        self.to_k = ConvBatchNorm(nn.Conv2d(dim, heads * dim_key, 1, bias=False), nn.BatchNorm2d(heads * dim_key))
        self.to_v = ConvBatchNorm(nn.Conv2d(dim, heads * dim_value, 1, bias=False), nn.BatchNorm2d(heads * dim_value))
        self.to_out = nn.Sequential(nn.GELU(), nn.Linear(heads * dim_value, dim_out), TokenBatchNorm(dim_out))
        self.offset_bias = nn.Parameter(torch.zeros(grid[0] * grid[1], heads))
        self.register_buffer("offset_index", offset_index(grid, stride), persistent=False)

    def project_map(self, fmap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.to_q(fmap), self.to_k(fmap), self.to_v(fmap)

    def score_bias(self, q: Tensor, k: Tensor) -> Tensor:
        return self.offset_bias[self.offset_index].permute(2, 0, 1)


class ShrinkBlock(nn.Module):
    """The block between stages: strided-query attention (no residual: the shape changes), then a
    residual MLP, on a ``(b, h, w, c)`` map."""

    def __init__(self, attn: LeViTAttention, mlp: FeedForward) -> None:
        super().__init__()
        self.attn = attn
        self.ff = mlp

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = self.attn(x.reshape(b, h * w, c), grid=(h, w))
        x = x + self.ff(x)
        return x.view(b, math.ceil(h / 2), math.ceil(w / 2), -1)


def no_norm(_: int) -> nn.Module:
    return nn.Identity()


class LeViT(HierarchicalModel):
    """LeViT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's ``levit.LeViT``.

    ``dim``, ``depth`` and ``heads`` are ints or tuples of ``stages`` entries; ``mlp_mult`` is the
    MLP expansion of the stages (the shrink blocks use 2, with twice the heads).  The attention
    biases fix the input to ``image_size``.  With ``num_distill_classes`` a second linear head
    reads the same pooled vector and ``forward`` returns ``(logits, distill_logits)``.
    """

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        num_classes: int,
        dim: int | tuple[int, ...],
        depth: int | tuple[int, ...],
        heads: int | tuple[int, ...],
        mlp_mult: int,
        stages: int = 3,
        dim_key: int = 32,
        dim_value: int = 64,
        dropout: float = 0.0,
        num_distill_classes: int | None = None,
        channels: int = 3,
    ) -> None:
        size = as_pair("image_size", image_size)
        check_positive_int("stages", stages)
        dims = per_stage("dim", dim, stages, check=check_positive_int)
        depths = per_stage("depth", depth, stages, check=check_non_negative_int)
        stage_heads = per_stage("heads", heads, stages, check=check_positive_int)
        check_positive_ints(mlp_mult=mlp_mult, dim_key=dim_key, dim_value=dim_value, channels=channels)
        check_probability("dropout", dropout)
        grid = size
        for _ in range(4):
            grid = tuple(conv_side(s, 3, 2, 1) for s in grid)
        super().__init__(channels=channels, rule=exact_size(size, "LeViT's attention biases"))
        self.image_size = size
        widths = (channels, *STEM_WIDTHS, dims[0])
        self.stem = nn.Sequential(*(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in itertools.pairwise(widths)))

        def block(width: int, n_heads: int) -> TokenMapBlock:
            attn = LeViTAttention(
                width, n_heads, dim_key=dim_key, dim_value=dim_value, grid=grid, dim_out=width, dropout=dropout
            )
            mlp = FeedForward(width, width * mlp_mult, dropout, activation=nn.Hardswish)
            return TokenMapBlock(TransformerBlock(attn, mlp, width, norm=no_norm))

        stage_list, reduction = [], 16
        for i in range(stages):
            downsample = None
            if i:
                shrink = LeViTAttention(
                    dims[i - 1],
                    2 * stage_heads[i - 1],
                    dim_key=dim_key,
                    dim_value=dim_value,
                    grid=grid,
                    dim_out=dims[i],
                    stride=2,
                )
                downsample = ShrinkBlock(shrink, FeedForward(dims[i], 2 * dims[i], activation=nn.Hardswish))
                grid, reduction = tuple(math.ceil(s / 2) for s in grid), 2 * reduction
            blocks = [block(dims[i], stage_heads[i]) for _ in range(depths[i])]
            stage_list.append(Stage(blocks, dim=dims[i], reduction=reduction, downsample=downsample))
        self.stages = nn.ModuleList(stage_list)
        self.build_head(num_classes)
        self.num_distill_classes = num_distill_classes
        self.distill_head = (
            nn.Linear(dims[-1], check_positive_int("num_distill_classes", num_distill_classes))
            if num_distill_classes is not None
            else None
        )

    def forward(self, img: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        features = self.forward_features(img)
        out = self.forward_head(features)
        if self.distill_head is None:
            return out
        return out, self.distill_head(self.pool_features(features))
