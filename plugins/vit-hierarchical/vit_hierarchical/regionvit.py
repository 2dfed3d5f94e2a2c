"""RegionViT: "Regional-to-Local Attention for Vision Transformers" (Chen et al., arXiv 2106.02689).

What the paper changes: two token maps.  Local tokens are fine patches (4x4 pixels); regional
tokens are coarse ones, one per ``window_size`` x ``window_size`` block of local tokens.  A
regional-to-local (R2L) layer first runs self-attention among all regional tokens (global
context, cheap), then, within each region, attention over the region's local tokens together
with its regional token (with a relative-position bias between local tokens), then a
feed-forward.  The two attentions share their weights.  Stages halve both maps with one shared
3x3 stride-2 convolution; classification pools the regional tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.layers import Attention, FeedForward, TransformerBlock
from vit_core.layers.spatial import RelativePositionBias
from vit_core.validation import (
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_positive_ints,
    check_probability,
)
from vit_hierarchical.conv import PositionEncodingGenerator
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, to_nchw, to_nhwc
from vit_hierarchical.validation import per_stage
from vit_hierarchical.windows import merge, partition

STAGES = 4
STREAMS = ("local", "regional")
"""The two token maps, in the order of :data:`RegionState`; ``forward_intermediates(stream=...)`` picks one."""
RegionState = tuple[Tensor, Tensor]
"""Local and regional token maps, both ``(b, h, w, c)``; the local one ``window_size`` times larger."""


class R2LLayer(nn.Module):
    """Regional self-attention, then local attention within each region (its regional token first),
    then a feed-forward: one core TransformerBlock whose attention serves both steps."""

    def __init__(self, dim: int, heads: int, dim_head: int, attn_dropout: float, ff_dropout: float) -> None:
        super().__init__()
        attn = Attention(dim, heads, dim_head, attn_dropout, project_out=True)
        self.block = TransformerBlock(attn, FeedForward(dim, 4 * dim, ff_dropout), dim)

    def forward(self, local: Tensor, regional: Tensor, bias: Tensor) -> RegionState:
        b, rh, rw, c = regional.shape
        (lh, lw), window = local.shape[1:3], (local.shape[1] // rh, local.shape[2] // rw)
        tokens = regional.reshape(b, rh * rw, c)
        tokens = self.block.mix(tokens)
        windows = torch.cat((tokens.reshape(b * rh * rw, 1, c), partition(local, window, "window")), dim=1)
        windows = self.block(windows, bias=bias)
        local = merge(windows[:, 1:], window, (lh, lw), "window")
        return local, windows[:, 0].reshape(b, rh, rw, c)


class R2LStage(nn.Module):
    """Shared downsampling of both maps (from the second stage on), a PEG on the local map (if
    used), then the R2L layers."""

    def __init__(
        self,
        dim_in: int,
        dim: int,
        depth: int,
        *,
        window: int,
        heads: int,
        dim_head: int,
        downsample: bool,
        peg: bool,
        attn_dropout: float,
        ff_dropout: float,
        reduction: int,
    ) -> None:
        super().__init__()
        self.downsample = ChannelsLast(nn.Conv2d(dim_in, dim, 3, stride=2, padding=1)) if downsample else nn.Identity()
        self.peg = ChannelsLast(PositionEncodingGenerator(dim)) if peg else nn.Identity()
        self.relative_bias = RelativePositionBias(heads, (window, window))
        self.layers = nn.ModuleList(R2LLayer(dim, heads, dim_head, attn_dropout, ff_dropout) for _ in range(depth))
        self.dim, self.reduction = dim, reduction

    def forward(self, state: RegionState) -> RegionState:
        local, regional = (self.downsample(t) for t in state)
        local = self.peg(local)
        bias = F.pad(self.relative_bias(), (1, 0, 1, 0))  # the regional token gets no positional bias
        for layer in self.layers:
            local, regional = layer(local, regional, bias)
        return local, regional


class RegionViT(HierarchicalModel):
    """RegionViT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's
    ``regionvit.RegionViT``.

    Four stages; ``dim`` and ``depth`` a value for every stage or a 4-tuple.  Local tokens are
    ``local_patch_size`` patches (one ``2p x 2p`` stride-``p`` convolution, or three 3x3 ones
    with ``tokenize_local_3_conv``); regional tokens ``local_patch_size * window_size`` patches.
    Input sides must be multiples of ``local_patch_size * window_size * 8`` (224 with the
    defaults), so that both maps halve exactly three times.  ``forward_features`` is the pair of
    maps ``(local, regional)`` of the last stage (the classifier pools the regional one).
    ``forward_intermediates`` gives one map per stage, of the stream ``stream`` selects: the local
    maps by default (the backbone features ``feature_info`` describes, reductions ``p`` .. ``8p``),
    ``stream="regional"`` the regional maps (``window_size`` times coarser).  The local outputs
    of the very last layer reach only those features, not the logits.
    ``channels`` is honoured by both tokenizers (vit-pytorch's local one takes 3).
    """

    stage_blocks = "layers"

    def __init__(
        self,
        *,
        dim: int | tuple[int, ...] = (64, 128, 256, 512),
        depth: int | tuple[int, ...] = (2, 2, 8, 2),
        window_size: int = 7,
        num_classes: int = 1000,
        tokenize_local_3_conv: bool = False,
        local_patch_size: int = 4,
        use_peg: bool = False,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        channels: int = 3,
        heads: int = 4,
        dim_head: int = 32,
    ) -> None:
        dims = per_stage("dim", dim, STAGES, check=check_positive_int)
        depths = per_stage("depth", depth, STAGES, check=check_non_negative_int)
        check_positive_ints(
            window_size=window_size,
            local_patch_size=local_patch_size,
            channels=channels,
            heads=heads,
            dim_head=dim_head,
        )
        if local_patch_size < 2:
            raise ValueError(
                f"local_patch_size must be at least 2 (overlapping 2p x 2p patches), got {local_patch_size}"
            )
        if tokenize_local_3_conv and local_patch_size != 4:
            raise ValueError(
                f"tokenize_local_3_conv embeds 4x4 patches; local_patch_size must be 4, got {local_patch_size}"
            )
        check_probability("attn_dropout", attn_dropout)
        check_probability("ff_dropout", ff_dropout)
        super().__init__(channels=channels, rule=self._side_problem)
        self.window_size, self.local_patch_size = window_size, local_patch_size
        self.region_patch_size = local_patch_size * window_size
        d0 = dims[0]
        if tokenize_local_3_conv:
            self.local_encoder: nn.Module = nn.Sequential(
                ChannelsLast(nn.Conv2d(channels, d0, 3, stride=2, padding=1)),
                nn.LayerNorm(d0),
                nn.GELU(),
                ChannelsLast(nn.Conv2d(d0, d0, 3, stride=2, padding=1)),
                nn.LayerNorm(d0),
                nn.GELU(),
                ChannelsLast(nn.Conv2d(d0, d0, 3, padding=1)),
            )
        else:
            p = local_patch_size
            self.local_encoder = ChannelsLast(nn.Conv2d(channels, d0, 2 * p, stride=p, padding=p - 1))
        self.region_encoder = nn.Conv2d(channels, d0, self.region_patch_size, stride=self.region_patch_size)
        self.stages = nn.ModuleList(
            R2LStage(
                dims[i - 1] if i else d0,
                dims[i],
                depths[i],
                window=window_size,
                heads=heads,
                dim_head=dim_head,
                downsample=i > 0,
                peg=use_peg and i > 0,
                attn_dropout=attn_dropout,
                ff_dropout=ff_dropout,
                reduction=local_patch_size * 2**i,
            )
            for i in range(STAGES)
        )
        self.build_head(num_classes, fc_norm=nn.LayerNorm(dims[-1]))

    def _side_problem(self, side: int, axis: int) -> str | None:
        unit = self.region_patch_size * 2 ** (STAGES - 1)
        if side % unit:
            return (
                f"sides must be divisible by local_patch_size * window_size * 2 ** 3 = {unit} (the regional "
                "patch, halved exactly by the three downsamplings)"
            )
        return None

    def stage_states(self, img: Tensor) -> Iterator[RegionState]:
        self.check_input(img)
        local = self.local_encoder(to_nhwc(img))
        state: RegionState = (local, to_nhwc(self.region_encoder(img)))
        for stage in self.stages:
            state = stage(state)
            yield state

    def stage_output(self, state: RegionState, output_fmt: str, norm: bool) -> RegionState:
        """Both maps of the stage, ``(local, regional)`` (:meth:`forward_intermediates` keeps one)."""
        return tuple(to_nchw(t) if output_fmt == "NCHW" else t for t in state)

    def forward_intermediates(
        self, img: Tensor, indices: int | Sequence[int] | None = None, *, stream: str = "local", **options: Any
    ) -> tuple[RegionState, list[Tensor]] | list[Tensor]:
        """As :meth:`HierarchicalModel.forward_intermediates` (``norm``, ``output_fmt``,
        ``intermediates_only``), each stage's map of one ``stream``: ``"local"`` (the default: the
        backbone features) or ``"regional"``; the final features stay the pair ``(local, regional)``."""
        kept = STREAMS.index(check_choice("stream", stream, STREAMS))
        only = options.pop("intermediates_only", False)
        final, pairs = super().forward_intermediates(img, indices, **options)
        outputs = [pair[kept] for pair in pairs]
        return outputs if only else (final, outputs)

    def stage_features(self, state: RegionState) -> RegionState:
        return to_nchw(state[0]), to_nchw(state[1])

    def pool_features(self, features: RegionState) -> Tensor:
        """The mean of the regional tokens (LayerNorm-ed)."""
        return self.fc_norm(features[1].mean(dim=(2, 3)))
