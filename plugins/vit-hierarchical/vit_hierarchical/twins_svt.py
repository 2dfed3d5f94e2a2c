"""Twins-SVT: "Revisiting the Design of Spatial Attention in Vision Transformers" (Chu et al., arXiv 2104.13840).

What the paper changes: attention alternates between *locally-grouped* self-attention (LSA,
within non-overlapping ``local_patch_size`` windows) and *global sub-sampled* attention (GSA:
every token attends to keys and values taken from a ``global_k`` x ``global_k`` strided
convolution of the map, one per ``k x k`` patch).  Positions come from a PEG (CPVT's
depth-wise convolution, arXiv 2102.10882) after each stage's first block; each stage starts
with a patch embedding; no class token.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from vit_core.layers import Attention, ChannelsLastPatchEmbedding, FeedForward, TransformerBlock
from vit_core.validation import (
    check_non_negative_int,
    check_odd_kernel,
    check_positive_int,
    check_positive_ints,
    check_probability,
)
from vit_hierarchical.attention import MapProjectionAttention
from vit_hierarchical.conv import PositionEncodingGenerator
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, Stage, TokenMapBlock
from vit_hierarchical.validation import per_stage
from vit_hierarchical.windows import GroupedBlock

STAGE_ARGS = ("emb_dim", "patch_size", "local_patch_size", "global_k", "depth")


class GlobalSubsampledAttention(MapProjectionAttention):
    """GSA: queries from every token, keys and values from a ``k x k`` convolution of stride ``k``."""

    def __init__(self, dim: int, heads: int, dim_head: int, *, k: int, **kwargs: Any) -> None:
        super().__init__(dim, heads, dim_head, project_out=True, **kwargs)
        inner = heads * dim_head
        self.to_q = nn.Conv2d(dim, inner, 1, bias=False)
        self.to_kv = nn.Conv2d(dim, 2 * inner, k, stride=k, bias=False)

    def project_map(self, fmap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return (self.to_q(fmap), *self.to_kv(fmap).chunk(2, dim=1))


class TwinsSVT(HierarchicalModel):
    """Twins-SVT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's ``twins_svt.TwinsSVT``.

    Stage ``i`` (``s1_`` .. ``s4_``): a ``patch_size`` patch embedding to ``emb_dim``, then one
    layer, the PEG, and ``depth`` more layers; a layer is LSA in ``local_patch_size`` windows plus
    a feed-forward, then GSA with ``global_k`` sub-sampling plus a feed-forward (the last stage
    has GSA only).  ``heads`` (an int or one per stage) and ``dim_head`` default to vit-pytorch's
    fixed 8 and 64; ``channels`` is the number of image channels.  Every stage's map must be divisible
    by its patch size and, but for the last stage, its local window.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        s1_emb_dim: int = 64,
        s1_patch_size: int = 4,
        s1_local_patch_size: int = 7,
        s1_global_k: int = 7,
        s1_depth: int = 1,
        s2_emb_dim: int = 128,
        s2_patch_size: int = 2,
        s2_local_patch_size: int = 7,
        s2_global_k: int = 7,
        s2_depth: int = 1,
        s3_emb_dim: int = 256,
        s3_patch_size: int = 2,
        s3_local_patch_size: int = 7,
        s3_global_k: int = 7,
        s3_depth: int = 5,
        s4_emb_dim: int = 512,
        s4_patch_size: int = 2,
        s4_local_patch_size: int = 7,
        s4_global_k: int = 7,
        s4_depth: int = 4,
        peg_kernel_size: int = 3,
        dropout: float = 0.0,
        channels: int = 3,
        heads: int | tuple[int, ...] = 8,
        dim_head: int = 64,
        mlp_mult: int = 4,
    ) -> None:
        args = locals()
        configs = [{k: args[f"s{i}_{k}"] for k in STAGE_ARGS} for i in (1, 2, 3, 4)]
        for i, config in enumerate(configs, start=1):
            for key, value in config.items():
                (check_non_negative_int if key == "depth" else check_positive_int)(f"s{i}_{key}", value)
        stage_heads = per_stage("heads", heads, len(configs), check=check_positive_int)
        check_positive_ints(channels=channels, dim_head=dim_head, mlp_mult=mlp_mult)
        check_odd_kernel("peg_kernel_size", peg_kernel_size)
        check_probability("dropout", dropout)
        super().__init__(channels=channels, rule=self._side_problem)
        self.configs = configs
        self.stem = nn.Identity()

        def ff(dim: int) -> FeedForward:
            return FeedForward(dim, dim * mlp_mult, dropout)

        def layer(dim: int, heads: int, config: dict[str, int], local: bool) -> list[nn.Module]:
            blocks: list[nn.Module] = []
            if local:
                window = (config["local_patch_size"],) * 2
                attn = Attention(dim, heads, dim_head, dropout, project_out=True)
                blocks.append(GroupedBlock(TransformerBlock(attn, ff(dim), dim), window, "window"))
            attn = GlobalSubsampledAttention(dim, heads, dim_head, k=config["global_k"], dropout=dropout)
            blocks.append(TokenMapBlock(TransformerBlock(attn, ff(dim), dim)))
            return blocks

        stages, dim_in, reduction = [], channels, 1
        for i, config in enumerate(configs):
            dim, local = config["emb_dim"], i < len(configs) - 1
            reduction *= config["patch_size"]
            blocks = layer(dim, stage_heads[i], config, local)
            blocks.append(ChannelsLast(PositionEncodingGenerator(dim, peg_kernel_size)))
            for _ in range(config["depth"]):
                blocks += layer(dim, stage_heads[i], config, local)
            embed = ChannelsLastPatchEmbedding(dim_in, (config["patch_size"],) * 2, dim)
            stages.append(Stage(blocks, dim=dim, reduction=reduction, downsample=embed))
            dim_in = dim
        self.stages = nn.ModuleList(stages)
        self.build_head(num_classes)

    def _side_problem(self, side: int, axis: int) -> str | None:
        current = side
        for i, config in enumerate(self.configs, start=1):
            patch, window, k = config["patch_size"], config["local_patch_size"], config["global_k"]
            if current % patch:
                return f"stage {i}'s input side {current} is not divisible by s{i}_patch_size={patch}"
            current //= patch
            if i < len(self.configs) and current % window:
                return f"stage {i}'s map side {current} is not divisible by s{i}_local_patch_size={window}"
            if current < k:
                return f"stage {i}'s map side {current} is smaller than s{i}_global_k={k}"
        return None
