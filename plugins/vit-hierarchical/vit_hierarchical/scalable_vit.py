"""ScalableViT: "Rethinking the Context-oriented Generalization for Vision Transformer" (Yang et al., arXiv 2203.10790).

What the paper adds: *scalable self-attention* (SSA), whose keys and values come from a
``reduction_factor`` strided convolution of the map (spatial scaling) and whose query/key width
``ssa_dim_key`` is set apart from the value width (channel scaling); and *interactive windowed
self-attention* (IWSA), attention within ``window_size`` windows plus a *local interactive
module* (a 3x3 convolution of the values over the whole map, added to the output) that lets
the windows exchange information.  A block is SSA, feed-forward, IWSA, feed-forward; a PEG
(CPVT, arXiv 2102.10882) follows the first feed-forward of every stage.
"""

from __future__ import annotations

from torch import Tensor, nn

from vit_core.layers import FeedForward, TransformerBlock
from vit_core.layers.spatial import map_to_tokens, tokens_to_map
from vit_core.validation import check_positive_int, check_positive_ints, check_probability
from vit_hierarchical.attention import DenseMapAttention, MapProjectionAttention, split_heads
from vit_hierarchical.conv import PositionEncodingGenerator
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, TokenMapBlock, pyramid_stage
from vit_hierarchical.validation import conv_side, per_stage, stage_count
from vit_hierarchical.windows import merge, partition


class ScalableSelfAttention(MapProjectionAttention):
    """SSA: queries and keys ``dim_key`` wide per head, values ``dim_value``; keys and values from a
    ``reduction`` x ``reduction`` convolution of stride ``reduction``."""

    def __init__(self, dim: int, heads: int, *, dim_key: int, dim_value: int, reduction: int, dropout: float) -> None:
        super().__init__(dim, heads, dim_key, dropout, dim_value=dim_value, project_out=True)
        self.to_q = nn.Conv2d(dim, heads * dim_key, 1, bias=False)
        self.to_k = nn.Conv2d(dim, heads * dim_key, reduction, stride=reduction, bias=False)
        self.to_v = nn.Conv2d(dim, heads * dim_value, reduction, stride=reduction, bias=False)

    def project_map(self, fmap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.to_q(fmap), self.to_k(fmap), self.to_v(fmap)


class InteractiveWindowAttention(MapProjectionAttention, DenseMapAttention):
    """IWSA: attention within ``window`` windows (``None``: the whole map) plus the local interactive
    module, a 3x3 convolution of the value map added to the attention output before projection."""

    def __init__(
        self, dim: int, heads: int, *, dim_key: int, dim_value: int, window: int | None, dropout: float
    ) -> None:
        super().__init__(dim, heads, dim_key, dropout, dim_value=dim_value, project_out=True)
        self.window = window
        self.to_q = nn.Conv2d(dim, heads * dim_key, 1, bias=False)
        self.to_k = nn.Conv2d(dim, heads * dim_key, 1, bias=False)
        self.to_v = nn.Conv2d(dim, heads * dim_value, 1, bias=False)
        self.local_interaction = nn.Conv2d(heads * dim_value, heads * dim_value, 3, padding=1)

    def project_map(self, fmap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.to_q(fmap), self.to_k(fmap), self.to_v(fmap)

    def attend_map(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        b, (h, w) = x.shape[0], grid
        window = (h, w) if self.window is None else (self.window, self.window)
        q, k, v = self.project_map(tokens_to_map(x, grid))
        local = map_to_tokens(self.local_interaction(v))
        q, k, v = (partition(map_to_tokens(t).reshape(b, h, w, -1), window, "window") for t in (q, k, v))
        out = self.attend(*(split_heads(t, self.heads) for t in (q, k, v)))
        out = out.transpose(1, 2).reshape(out.shape[0], -1, out.shape[1] * out.shape[-1])
        out = merge(out, window, (h, w), "window").reshape(b, h * w, -1)
        return self.out_dropout(self.to_out(out + local))


class ScalableViT(HierarchicalModel):
    """ScalableViT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's
    ``scalable_vit.ScalableViT``.

    ``depth`` is a tuple of blocks per stage; ``dim`` the first stage's width (doubled at each
    stage); ``heads``, ``ssa_dim_key``, ``ssa_dim_value``, ``reduction_factor``, ``iwsa_dim_key``,
    ``iwsa_dim_value`` and ``window_size`` an int or one per stage (``window_size=None``: the
    whole map).  A 7x7 stride-4 convolution embeds the image; a 3x3 stride-2 convolution starts
    every later stage; each stage but the last ends with a LayerNorm.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        dim: int,
        depth: tuple[int, ...],
        heads: int | tuple[int, ...],
        reduction_factor: int | tuple[int, ...],
        window_size: int | tuple[int | None, ...] | None = None,
        iwsa_dim_key: int | tuple[int, ...] = 32,
        iwsa_dim_value: int | tuple[int, ...] = 32,
        ssa_dim_key: int | tuple[int, ...] = 32,
        ssa_dim_value: int | tuple[int, ...] = 32,
        ff_expansion_factor: int = 4,
        channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        depths = stage_count("depth", depth)
        n = len(depths)
        stage = {
            name: per_stage(name, value, n, check=check_positive_int)
            for name, value in (
                ("heads", heads),
                ("reduction_factor", reduction_factor),
                ("iwsa_dim_key", iwsa_dim_key),
                ("iwsa_dim_value", iwsa_dim_value),
                ("ssa_dim_key", ssa_dim_key),
                ("ssa_dim_value", ssa_dim_value),
            )
        }
        windows = per_stage("window_size", window_size, n, check=check_positive_int, allow_none=True)
        check_positive_ints(dim=dim, ff_expansion_factor=ff_expansion_factor, channels=channels)
        check_probability("dropout", dropout)
        super().__init__(channels=channels, rule=self._side_problem)
        self.windows, self.reductions = windows, stage["reduction_factor"]
        self.stem = nn.Conv2d(channels, dim, 7, stride=4, padding=3)

        def ff(width: int) -> FeedForward:
            return FeedForward(width, width * ff_expansion_factor, dropout)

        stages = []
        for i, stage_depth in enumerate(depths):
            width = dim * 2**i
            blocks: list[nn.Module] = []
            for j in range(stage_depth):
                ssa = ScalableSelfAttention(
                    width,
                    stage["heads"][i],
                    dim_key=stage["ssa_dim_key"][i],
                    dim_value=stage["ssa_dim_value"][i],
                    reduction=stage["reduction_factor"][i],
                    dropout=dropout,
                )
                iwsa = InteractiveWindowAttention(
                    width,
                    stage["heads"][i],
                    dim_key=stage["iwsa_dim_key"][i],
                    dim_value=stage["iwsa_dim_value"][i],
                    window=windows[i],
                    dropout=dropout,
                )
                blocks.append(TokenMapBlock(TransformerBlock(ssa, ff(width), width)))
                if j == 0:
                    blocks.append(ChannelsLast(PositionEncodingGenerator(width)))
                blocks.append(TokenMapBlock(TransformerBlock(iwsa, ff(width), width)))
            downsample = ChannelsLast(nn.Conv2d(width // 2, width, 3, stride=2, padding=1)) if i else None
            stages.append(pyramid_stage(blocks, i, n, width, downsample))
        self.stages = nn.ModuleList(stages)
        self.build_head(num_classes, fc_norm=nn.LayerNorm(self.stages[-1].dim))

    def _side_problem(self, side: int, axis: int) -> str | None:
        current = conv_side(side, 7, 4, 3)
        for i, (window, reduction) in enumerate(zip(self.windows, self.reductions)):
            if i:
                current = conv_side(current, 3, 2, 1)
            if current < reduction:
                return f"stage {i + 1}'s map side {current} is smaller than its reduction_factor={reduction}"
            if window is not None and current % window:
                return f"stage {i + 1}'s map side {current} is not divisible by its window_size={window}"
        return None
