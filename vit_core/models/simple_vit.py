"""SimpleViT: "Better plain ViT baselines for ImageNet-1k" (Beyer et al., arXiv 2205.01580).

Changes to ViT: fixed 2-D sin-cos positions, global average pooling instead of a class token,
no dropout, and no bias on the attention output projection.
"""

from __future__ import annotations

from vit_core.layers import FixedPositionalEmbedding, Transformer, sincos_2d
from vit_core.models.patch_model import PatchTransformer, check_image_patches
from vit_core.validation import check_divisible


class SimpleViT(PatchTransformer):
    """ViT with sin-cos positions and mean pooling (arguments as vit-pytorch's ``SimpleViT``)."""

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        channels: int = 3,
        dim_head: int = 64,
    ) -> None:
        image_size, patch_size, grid = check_image_patches(image_size, patch_size, dim=dim)
        check_divisible("dim", dim, "4 (SimpleViT's 2-D sin-cos table)", 4)
        super().__init__(
            input_size=image_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool="mean",
            positional=FixedPositionalEmbedding(sincos_2d(*grid, dim)),
            transformer=Transformer(dim, depth, heads, dim_head, mlp_dim, out_bias=False, project_out=True),
        )
