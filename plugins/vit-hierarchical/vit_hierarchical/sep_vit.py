"""SepViT: "Separable Vision Transformer" (Li et al., arXiv 2203.15380).

What the paper adds: depth-wise separable self-attention (DSSA), in two steps like a separable
convolution.  *Depth-wise*: attention inside each ``window_size`` window, together with a
learned window token that summarises the window.  *Point-wise*: the window tokens, normalised
and activated, give queries and keys for attention *between windows*, whose values are the
windows' whole feature maps, so every window receives a mix of all the others.  Stages start
with an overlapping convolutional patch embedding and a PEG (CPVT, arXiv 2102.10882).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_core.layers import FeedForward, TransformerBlock
from vit_core.validation import check_positive_int, check_positive_ints, check_probability
from vit_hierarchical.attention import DenseMapAttention, split_heads
from vit_hierarchical.conv import PositionEncodingGenerator
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, TokenMapBlock, pyramid_stage
from vit_hierarchical.validation import conv_side, per_stage, stage_count
from vit_hierarchical.windows import merge, partition


class SeparableWindowAttention(DenseMapAttention):
    """DSSA over the ``grid=(h, w)`` token map: window attention with a window token (depth-wise),
    then attention between windows (point-wise) with queries and keys from the window tokens and
    the windows' maps as values.  With a single window the point-wise step is the identity (a
    softmax over one window), and it still runs: its parameters get their (zero) gradients, so
    DistributedDataParallel finds no unused parameter (vit-pytorch skips it, leaving them none)."""

    def __init__(self, dim: int, heads: int, dim_head: int, window: int, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, dim_head, dropout, project_out=True)
        inner = heads * dim_head
        self.window = window
        self.window_token = nn.Parameter(torch.randn(dim))
        self.window_norm = nn.LayerNorm(dim_head)
        self.window_act = nn.GELU()
        self.window_qk = nn.Linear(inner, 2 * inner)

    def attend_map(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        b, (h, w), d = x.shape[0], grid, self.dim_head
        window = (self.window, self.window)
        windows = partition(x.view(b, h, w, -1), window, "window")
        count, n = windows.shape[0] // b, windows.shape[1]
        tokens = torch.cat((self.window_token.expand(windows.shape[0], 1, -1), windows), dim=1)
        q, k, v = self.project(tokens)
        out = self.attend(q, k, v)
        summary, maps = out[:, :, 0], out[:, :, 1:]
        summary = summary.reshape(b, count, self.heads, d).transpose(1, 2)
        maps = maps.reshape(b, count, self.heads, n * d).transpose(1, 2)
        qk = self.window_qk(self.window_act(self.window_norm(summary)).transpose(1, 2).reshape(b, count, -1))
        wq, wk = split_heads(qk, self.heads).split(d, dim=-1)
        maps = self.attend(wq.contiguous(), wk.contiguous(), maps).transpose(1, 2)
        out = maps.reshape(b * count, self.heads, n, d).transpose(1, 2).reshape(b * count, n, -1)
        out = merge(self.out_dropout(self.to_out(out)), window, (h, w), "window")
        return out.reshape(b, h * w, -1)


class SepViT(HierarchicalModel):
    """SepViT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's ``sep_vit.SepViT``.

    ``depth`` is a tuple of blocks per stage; ``dim`` the first stage's width (doubled at each
    stage); ``heads`` and ``window_size`` an int or one per stage; ``dim_head`` the head width.
    Overlapping convolutions embed (stride 4, then 2); each stage but the last ends with a
    LayerNorm.  Every stage's map must be divisible by its window size.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        dim: int,
        depth: tuple[int, ...],
        heads: int | tuple[int, ...],
        window_size: int | tuple[int, ...] = 7,
        dim_head: int = 32,
        ff_mult: int = 4,
        channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        depths = stage_count("depth", depth)
        n = len(depths)
        stage_heads = per_stage("heads", heads, n, check=check_positive_int)
        self_windows = per_stage("window_size", window_size, n, check=check_positive_int)
        check_positive_ints(dim=dim, dim_head=dim_head, ff_mult=ff_mult, channels=channels)
        check_probability("dropout", dropout)
        super().__init__(channels=channels, rule=self._side_problem)
        self.windows, self.strides = self_windows, (4, *(2,) * (n - 1))
        self.stem = nn.Identity()
        stages, dim_in = [], channels
        for i, stage_depth in enumerate(depths):
            width, stride = dim * 2**i, self.strides[i]
            kernel = 2 * stride - 1
            embed = ChannelsLast(nn.Conv2d(dim_in, width, kernel, stride=stride, padding=kernel // 2))
            blocks: list[nn.Module] = [ChannelsLast(PositionEncodingGenerator(width))]
            for _ in range(stage_depth):
                attn = SeparableWindowAttention(width, stage_heads[i], dim_head, self_windows[i], dropout)
                mlp = FeedForward(width, width * ff_mult, dropout)
                blocks.append(TokenMapBlock(TransformerBlock(attn, mlp, width)))
            stages.append(pyramid_stage(blocks, i, n, width, embed))
            dim_in = width
        self.stages = nn.ModuleList(stages)
        self.build_head(num_classes, fc_norm=nn.LayerNorm(self.stages[-1].dim))

    def _side_problem(self, side: int, axis: int) -> str | None:
        current = side
        for i, (window, stride) in enumerate(zip(self.windows, self.strides)):
            kernel = 2 * stride - 1
            current = conv_side(current, kernel, stride, kernel // 2)
            if current < 1 or current % window:
                return f"stage {i + 1}'s map side {current} is not divisible by its window_size={window}"
        return None
