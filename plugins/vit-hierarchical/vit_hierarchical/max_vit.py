"""MaxViT: "Multi-Axis Vision Transformer" (Tu et al., arXiv 2204.01697).

What the paper adds: every block is an MBConv (inverted residual with squeeze-excitation),
then *block* attention within non-overlapping ``window_size`` windows (local), then *grid*
attention over a ``window_size x window_size`` grid of tokens spread across the whole map
(global, sparse), both with a relative-position bias.  Stages double the width and halve the
map; the first MBConv of a stage downsamples.
"""

from __future__ import annotations

from torch import Tensor, nn

from vit_core.layers import FeedForward, TransformerBlock
from vit_core.validation import check_divisible, check_positive_int, check_probability
from vit_hierarchical.attention import RelativePositionAttention
from vit_hierarchical.conv import InvertedResidual
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, Stage
from vit_hierarchical.validation import conv_side, stage_count
from vit_hierarchical.windows import GroupedBlock


def window_block(dim: int, dim_head: int, window: int, dropout: float, grouping: str) -> GroupedBlock:
    """Pre-norm attention (relative-position bias) and feed-forward within each window or grid group."""
    attn = RelativePositionAttention(
        dim, dim // dim_head, dim_head, (window, window), dropout=dropout, out_bias=False, project_out=True
    )
    return GroupedBlock(TransformerBlock(attn, FeedForward(dim, 4 * dim, dropout), dim), (window, window), grouping)


class MaxViTBlock(nn.Module):
    """MBConv -> block attention -> grid attention, on a ``(b, h, w, c)`` map."""

    def __init__(
        self,
        dim_in: int,
        dim: int,
        *,
        downsample: bool,
        dim_head: int,
        window: int,
        expansion_rate: float,
        shrinkage_rate: float,
        dropout: float,
    ) -> None:
        super().__init__()
        hidden = int(expansion_rate * dim)
        self.mbconv = ChannelsLast(
            InvertedResidual(
                dim_in,
                dim,
                hidden_dim=hidden,
                stride=2 if downsample else 1,
                activation=nn.GELU,
                bias=True,
                se_dim=int(hidden * shrinkage_rate),
            )
        )
        self.block_attention = window_block(dim, dim_head, window, dropout, "window")
        self.grid_attention = window_block(dim, dim_head, window, dropout, "grid")

    def forward(self, x: Tensor) -> Tensor:
        return self.grid_attention(self.block_attention(self.mbconv(x)))


class MaxViT(HierarchicalModel):
    """MaxViT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's ``max_vit.MaxViT``.

    ``dim`` is the first stage's width (doubled at each stage), ``depth`` a tuple of blocks per
    stage, ``dim_head`` the head width (heads = width / dim_head).  A convolutional stem halves
    the image and every stage halves it again, so every stage's map must be divisible by
    ``window_size``: a 224 input with window 7 gives maps 56, 28, 14, 7.  The expanded width of
    MBConv is ``mbconv_expansion_rate`` times its output width and its squeeze-excitation
    ``mbconv_shrinkage_rate`` times that.  ``forward_features`` is the last map ``(b, 8 dim, h, w)``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        dim: int,
        depth: tuple[int, ...],
        dim_head: int = 32,
        dim_conv_stem: int | None = None,
        window_size: int = 7,
        mbconv_expansion_rate: float = 4,
        mbconv_shrinkage_rate: float = 0.25,
        dropout: float = 0.1,
        channels: int = 3,
    ) -> None:
        depths = stage_count("depth", depth)
        if any(d < 1 for d in depths):
            raise ValueError(
                f"depth must hold positive ints (each stage starts with a downsampling block), got {depth!r}"
            )
        check_positive_int("dim", dim)
        check_positive_int("dim_head", dim_head)
        check_divisible("dim", dim, "dim_head", dim_head)
        check_positive_int("window_size", window_size)
        check_positive_int("channels", channels)
        check_probability("dropout", dropout)
        if not mbconv_expansion_rate > 0:
            raise ValueError(f"mbconv_expansion_rate must be positive, got {mbconv_expansion_rate!r}")
        if not 0 < mbconv_shrinkage_rate <= 1 or int(int(mbconv_expansion_rate * dim) * mbconv_shrinkage_rate) < 1:
            raise ValueError(
                f"mbconv_shrinkage_rate must be in (0, 1] and leave the squeeze-excitation at least one "
                f"channel, got {mbconv_shrinkage_rate!r}"
            )
        stem_dim = dim if dim_conv_stem is None else check_positive_int("dim_conv_stem", dim_conv_stem)
        super().__init__(channels=channels, rule=self._side_problem)
        self.window_size, self.num_stages = window_size, len(depths)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, stem_dim, 3, stride=2, padding=1), nn.Conv2d(stem_dim, stem_dim, 3, padding=1)
        )
        stages, dim_in = [], stem_dim
        for i, stage_depth in enumerate(depths):
            width = dim * 2**i
            blocks = [
                MaxViTBlock(
                    dim_in if j == 0 else width,
                    width,
                    downsample=j == 0,
                    dim_head=dim_head,
                    window=window_size,
                    expansion_rate=mbconv_expansion_rate,
                    shrinkage_rate=mbconv_shrinkage_rate,
                    dropout=dropout,
                )
                for j in range(stage_depth)
            ]
            stages.append(Stage(blocks, dim=width, reduction=2 ** (i + 2)))
            dim_in = width
        self.stages = nn.ModuleList(stages)
        self.build_head(num_classes, fc_norm=nn.LayerNorm(self.stages[-1].dim))

    def stage_sides(self, side: int) -> list[int]:
        """Map side after the stem and after each stage (each halves it, rounding up)."""
        sides = [conv_side(side, 3, 2, 1)]
        for _ in range(self.num_stages):
            sides.append(conv_side(sides[-1], 3, 2, 1))
        return sides

    def _side_problem(self, side: int, axis: int) -> str | None:
        maps = self.stage_sides(side)[1:]
        if all(m > 0 and m % self.window_size == 0 for m in maps):
            return None
        return (
            f"every stage's map must be divisible by window_size={self.window_size} "
            f"(the stages' maps would be {', '.join(map(str, maps))})"
        )
