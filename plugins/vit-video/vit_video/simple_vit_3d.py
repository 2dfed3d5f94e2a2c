"""3D SimpleViT: "Better plain ViT baselines" (Beyer et al., arXiv 2205.01580) on video tubes.

Changes to 3D ViT: a fixed 3-D sin-cos table (:func:`vit_video.positional.sincos_3d`) instead of
learned positions, global average pooling instead of a class token, no dropout, and no bias on
the attention output projection.
"""

from __future__ import annotations

from vit_core.layers import FixedPositionalEmbedding, Transformer
from vit_core.validation import check_positive_ints
from vit_video.positional import sincos_3d
from vit_video.validation import VIDEO_LAYOUT, check_video_config
from vit_video.vit_3d import VideoPatchTransformer


class SimpleViT3D(VideoPatchTransformer):
    """SimpleViT over ``(batch, channels, frames, height, width)`` videos (arguments as
    vit-pytorch's ``simple_vit_3d.SimpleViT``)."""

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        image_patch_size: int | tuple[int, int],
        frames: int,
        frame_patch_size: int,
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        channels: int = 3,
        dim_head: int = 64,
    ) -> None:
        input_size, patch_size, grid = check_video_config(image_size, image_patch_size, frames, frame_patch_size)
        check_positive_ints(channels=channels, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim)
        super().__init__(
            input_size=input_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool="mean",
            positional=FixedPositionalEmbedding(sincos_3d(*grid, dim)),
            transformer=Transformer(dim, depth, heads, dim_head, mlp_dim, out_bias=False),
            layout=VIDEO_LAYOUT,
        )
