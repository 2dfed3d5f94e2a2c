"""NesT: "Nested Hierarchical Transformer" (Zhang et al., arXiv 2105.12723).

What the paper changes: attention runs only inside non-overlapping blocks of the token map,
each hierarchy with its own learned positions (shared by its blocks).  Between hierarchies a
"block aggregation" (3x3 convolution, LayerNorm, 3x3 max-pool of stride 2) halves the map and
widens it, so four blocks become one; the block size (tokens per block) stays the same.  The
hierarchies run bottom-up: the first has ``4 ** (num_hierarchies - 1)`` blocks, the last one.
"""

from __future__ import annotations

from torch import Tensor, nn

from vit_core.layers import LearnedPositionalEmbedding, PatchEmbedding, Transformer
from vit_core.validation import check_divisible, check_positive_int, check_positive_ints, check_probability
from vit_hierarchical.stages import ChannelsLast, HierarchicalModel, Stage
from vit_hierarchical.validation import as_pair, exact_size, per_stage
from vit_hierarchical.windows import GroupedBlock


class BlockAggregation(nn.Sequential):
    """3x3 convolution to the next width, LayerNorm over channels, 3x3 max-pool of stride 2."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = ChannelsLast(nn.Conv2d(dim_in, dim_out, 3, padding=1))
        self.norm = nn.LayerNorm(dim_out)
        self.pool = ChannelsLast(nn.MaxPool2d(3, stride=2, padding=1))


class NesT(HierarchicalModel):
    """NesT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's ``nest.NesT``.

    ``dim`` and ``heads`` are the first hierarchy's (both double at each level up);
    ``block_repeats`` the transformer depth of each hierarchy, bottom first; ``dim_head``
    defaults to ``dim // heads`` (vit-pytorch ignores the argument and always uses that).  The
    learned positions fix the input to ``image_size``, whose patch map must split into
    ``2 ** (num_hierarchies - 1)`` blocks per side.  ``forward_intermediates`` gives each
    hierarchy's map before aggregation; ``norm=True`` applies the final LayerNorm to the last.
    """

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int,
        num_classes: int,
        dim: int,
        heads: int,
        num_hierarchies: int,
        block_repeats: int | tuple[int, ...],
        mlp_mult: int = 4,
        channels: int = 3,
        dim_head: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        size = as_pair("image_size", image_size)
        check_positive_ints(patch_size=patch_size, dim=dim, heads=heads, mlp_mult=mlp_mult)
        check_positive_int("num_hierarchies", num_hierarchies)
        check_positive_int("channels", channels)
        check_probability("dropout", dropout)
        repeats = per_stage("block_repeats", block_repeats, num_hierarchies, check=check_positive_int, of="hierarchy")
        if dim_head is None:
            check_divisible("dim", dim, "heads", heads)
            dim_head = dim // heads
        check_positive_int("dim_head", dim_head)
        check_divisible("image_size", size[0], "patch_size", patch_size)
        check_divisible("image_size", size[1], "patch_size", patch_size)
        fmap = (size[0] // patch_size, size[1] // patch_size)
        per_side = 2 ** (num_hierarchies - 1)
        if fmap[0] % per_side or fmap[1] % per_side:
            raise ValueError(
                f"the patch map {fmap} of image_size {size} must split into {per_side} blocks per side "
                f"(2 ** (num_hierarchies - 1) with num_hierarchies={num_hierarchies})"
            )
        block = (fmap[0] // per_side, fmap[1] // per_side)
        super().__init__(channels=channels, rule=exact_size(size, "NesT's learned block positions"))
        self.image_size, self.patch_size = size, patch_size
        self.patch_embed = PatchEmbedding(channels, (patch_size, patch_size), dim)
        stages = []
        for level in range(num_hierarchies):
            width, level_heads = dim * 2**level, heads * 2**level
            trunk = Transformer(
                width, repeats[level], level_heads, dim_head, width * mlp_mult, dropout, final_norm=False
            )
            stages.append(
                Stage(
                    [GroupedBlock(trunk, block, "window", pos_embed=LearnedPositionalEmbedding(block, width))],
                    dim=width,
                    reduction=patch_size * 2**level,
                    downsample=BlockAggregation(width // 2, width) if level else None,
                )
            )
        self.stages = nn.ModuleList(stages)
        self.build_head(num_classes, map_norm=nn.LayerNorm(self.stages[-1].dim))

    def embed(self, img: Tensor) -> Tensor:
        return self.patch_embed.forward_map(img)
