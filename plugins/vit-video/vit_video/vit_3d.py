"""3D ViT: ViT (Dosovitskiy et al., arXiv 2010.11929) on spatio-temporal patches of a video.

The only change to ViT is the patch: a ``frame_patch_size x patch_height x patch_width`` tube
across frames, so one token covers several frames, with one learned position per tube of the
``(frames, height, width)`` grid.  As in vit-pytorch's ``vit_3d``, the encoder has no final norm;
the pooled vector is LayerNorm-ed before the head.
"""

from __future__ import annotations

from torch import Tensor

from vit_core.layers import LearnedPositionalEmbedding, Transformer
from vit_core.models.patch_model import PatchTransformer
from vit_core.validation import check_positive_ints
from vit_video.validation import VIDEO_LAYOUT, check_video, check_video_config


class VideoPatchTransformer(PatchTransformer):
    """A :class:`~vit_core.models.patch_model.PatchTransformer` over videos, with video-worded checks."""

    def patch_grid(self, x: Tensor) -> tuple[int, ...]:
        size = check_video(x, channels=self.channels, input_size=self.input_size, patch_size=self.patch_size)
        return tuple(s // p for s, p in zip(size, self.patch_size, strict=True))


class ViT3D(VideoPatchTransformer):
    """ViT over ``(batch, channels, frames, height, width)`` videos.

    Arguments keep the names of vit-pytorch's ``vit_3d.ViT``.  As there, the class token is kept with
    ``pool="mean"`` and averaged with the patch tokens, so weights trained either way import exactly.

    ``num_classes=0`` makes ``forward`` return the token features ``(batch, tokens, dim)``.
    """

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
        pool: str = "cls",
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
    ) -> None:
        input_size, patch_size, grid = check_video_config(image_size, image_patch_size, frames, frame_patch_size)
        check_positive_ints(dim=dim, channels=channels, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim)
        super().__init__(
            input_size=input_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool=pool,
            positional=LearnedPositionalEmbedding(grid, dim),
            transformer=Transformer(dim, depth, heads, dim_head, mlp_dim, dropout, final_norm=False),
            emb_dropout=emb_dropout,
            fc_norm=True,
            layout=VIDEO_LAYOUT,
            class_token=True,
        )
