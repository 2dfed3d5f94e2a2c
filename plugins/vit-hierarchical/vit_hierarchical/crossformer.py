"""CrossFormer: "A Versatile Vision Transformer Hinging on Cross-scale Attention" (Wang et al., arXiv 2108.00154).

What the paper adds: a *cross-scale embedding layer* (each stage embeds with several kernel
sizes at one stride and concatenates them, more channels to the smaller kernels), attention
alternating between short-distance groups (adjacent ``local_window_size`` windows) and
long-distance groups (``global_window_size`` x ``global_window_size`` tokens sampled at a fixed
interval across the map), and a *dynamic position bias*: a small MLP maps each relative offset
``(dy, dx)`` to the attention bias, so it is defined for any group size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vit_core.layers import Attention, FeedForward, TransformerBlock
from vit_core.layers.spatial import relative_position_index
from vit_core.validation import check_non_negative_int, check_positive_int, check_probability
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, Stage
from vit_hierarchical.validation import conv_side, per_stage
from vit_hierarchical.windows import GroupedBlock

STAGES = 4


class CrossEmbedLayer(nn.Module):
    """Convolutions of one ``stride`` and several kernel sizes (smallest first), concatenated:
    ``dim_out / 2`` channels for the smallest kernel, ``dim_out / 4`` for the next, ..., the rest for
    the largest.  Padding ``(kernel - stride) // 2`` gives every scale the same output size."""

    def __init__(self, dim_in: int, dim_out: int, kernels: tuple[int, ...], stride: int) -> None:
        super().__init__()
        kernels = tuple(sorted(kernels))
        widths = [dim_out // 2 ** (i + 1) for i in range(len(kernels) - 1)]
        widths.append(dim_out - sum(widths))
        if min(widths) < 1:
            raise ValueError(f"dim={dim_out} is too narrow to split over the {len(kernels)} kernels {kernels}")
        self.kernels, self.stride = kernels, stride
        self.convs = nn.ModuleList(
            nn.Conv2d(dim_in, width, k, stride=stride, padding=(k - stride) // 2) for k, width in zip(kernels, widths)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(x) for conv in self.convs], dim=1)

    def output_side(self, side: int) -> int | None:
        """Output side, or ``None`` when the scales disagree (or nothing is left)."""
        sides = {conv_side(side, k, self.stride, (k - self.stride) // 2) for k in self.kernels}
        return sides.pop() if len(sides) == 1 and min(sides) >= 1 else None


class DynamicPositionBias(nn.Module):
    """An MLP from a relative offset ``(dy, dx)`` to one attention bias, shared by the heads:
    three ``Linear -> LayerNorm -> ReLU`` of width ``hidden``, then a ``Linear`` to 1 without bias
    (a constant added to every score leaves the softmax unchanged, so it could never learn).

    ``offsets`` holds the ``(2 g - 1) ** 2`` offsets of a ``(g, g)`` group, in the order of
    :func:`vit_core.layers.spatial.relative_position_index`; it is saved with the weights so that
    importers can reproduce another implementation's offsets (see :mod:`vit_hierarchical.weights`).
    """

    def __init__(self, hidden: int, group: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width_in in (2, hidden, hidden):
            layers += [nn.Linear(width_in, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, 1, bias=False))
        self.mlp = nn.Sequential(*layers)
        span = torch.arange(-(group - 1), group, dtype=torch.float32)
        offsets = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).reshape(-1, 2)
        self.register_buffer("offsets", offsets)
        self.register_buffer("index", relative_position_index((group, group)), persistent=False)

    def forward(self) -> Tensor:
        """The ``(1, n, n)`` bias of a group of ``n`` tokens."""
        return self.mlp(self.offsets).squeeze(-1)[self.index].unsqueeze(0)


class DynamicBiasAttention(Attention):
    """Attention within ``(g, g)`` groups with a dynamic position bias (fused kernel).  A group of
    one token has no offsets to tell apart, so it gets no bias module."""

    def __init__(self, dim: int, heads: int, dim_head: int, group: int, **kwargs: Any) -> None:
        super().__init__(dim, heads, dim_head, project_out=True, **kwargs)
        self.position_bias = DynamicPositionBias(dim // 4, group) if group > 1 else None

    def score_bias(self, q: Tensor, k: Tensor) -> Tensor | None:
        return self.position_bias() if self.position_bias is not None else None


class CrossFormer(HierarchicalModel):
    """CrossFormer over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's
    ``crossformer.CrossFormer``.

    Four stages; ``dim``, ``depth``, ``global_window_size``, ``local_window_size``,
    ``cross_embed_kernel_sizes`` and ``cross_embed_strides`` are a value for every stage or a
    4-tuple.  Each of a stage's ``depth`` layers is short-distance attention in
    ``local_window_size`` windows plus a feed-forward, then long-distance attention over a
    ``global_window_size`` grid plus a feed-forward; heads are ``dim / dim_head``.  Each stage's
    map must be divisible by both window sizes.
    """

    def __init__(
        self,
        *,
        dim: int | tuple[int, ...] = (64, 128, 256, 512),
        depth: int | tuple[int, ...] = (2, 2, 8, 2),
        global_window_size: int | tuple[int, ...] = (8, 4, 2, 1),
        local_window_size: int | tuple[int, ...] = 7,
        cross_embed_kernel_sizes: tuple[Any, ...] = ((4, 8, 16, 32), (2, 4), (2, 4), (2, 4)),
        cross_embed_strides: int | tuple[int, ...] = (4, 2, 2, 2),
        num_classes: int = 1000,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        channels: int = 3,
        dim_head: int = 32,
    ) -> None:
        dims = per_stage("dim", dim, STAGES, check=check_positive_int)
        depths = per_stage("depth", depth, STAGES, check=check_non_negative_int)
        global_windows = per_stage("global_window_size", global_window_size, STAGES, check=check_positive_int)
        local_windows = per_stage("local_window_size", local_window_size, STAGES, check=check_positive_int)
        strides = per_stage("cross_embed_strides", cross_embed_strides, STAGES, check=check_positive_int)
        kernels = cross_embed_kernel_sizes
        if isinstance(kernels, (tuple, list)) and all(isinstance(k, int) for k in kernels):
            kernels = (tuple(kernels),) * STAGES  # one set of kernel sizes for every stage
        kernels = per_stage("cross_embed_kernel_sizes", kernels, STAGES)
        for stage_kernels in kernels:
            if not isinstance(stage_kernels, (tuple, list)) or not stage_kernels:
                raise TypeError(
                    f"cross_embed_kernel_sizes must hold a tuple of kernel sizes per stage, got {kernels!r}"
                )
            for k in stage_kernels:
                check_positive_int("cross_embed_kernel_sizes", k)
        check_positive_int("dim_head", dim_head)
        check_positive_int("channels", channels)
        for d in dims:
            if d % dim_head:
                raise ValueError(f"every stage's dim must be divisible by dim_head={dim_head}, got dim={dims}")
        check_probability("attn_dropout", attn_dropout)
        check_probability("ff_dropout", ff_dropout)
        super().__init__(channels=channels, rule=self._side_problem)
        self.local_windows, self.global_windows = local_windows, global_windows
        self.stem = nn.Identity()

        def block(width: int, group: int, grouping: str) -> GroupedBlock:
            attn = DynamicBiasAttention(width, width // dim_head, dim_head, group, dropout=attn_dropout)
            mlp = FeedForward(width, 4 * width, ff_dropout)
            return GroupedBlock(TransformerBlock(attn, mlp, width), (group, group), grouping)

        stages, dim_in, reduction = [], channels, 1
        for i in range(STAGES):
            embed = CrossEmbedLayer(dim_in, dims[i], tuple(kernels[i]), strides[i])
            blocks = []
            for _ in range(depths[i]):
                blocks += [block(dims[i], local_windows[i], "window"), block(dims[i], global_windows[i], "grid")]
            reduction *= strides[i]
            stages.append(Stage(blocks, dim=dims[i], reduction=reduction, downsample=ChannelsLast(embed)))
            dim_in = dims[i]
        self.stages = nn.ModuleList(stages)
        self.build_head(num_classes)

    def _side_problem(self, side: int, axis: int) -> str | None:
        current = side
        for i, stage in enumerate(self.stages):
            embed: CrossEmbedLayer = stage.downsample.module
            out = embed.output_side(current)
            if out is None:
                return f"stage {i + 1}'s cross-scale embedding gives its kernels different sizes from a side {current}"
            current = out
            for name, window in (
                ("local_window_size", self.local_windows[i]),
                ("global_window_size", self.global_windows[i]),
            ):
                if current % window:
                    return f"stage {i + 1}'s map side {current} is not divisible by its {name}={window}"
        return None
