"""ViViT: "A Video Vision Transformer" (Arnab et al., arXiv 2103.15691).

Changes to 3D ViT: attention is factorized over space and time.  ``variant="factorized_encoder"``
(model 2) runs a spatial transformer within each frame, then a temporal transformer over one
token per frame; ``variant="factorized_self_attention"`` (model 3) alternates spatial and temporal
attention inside every layer.  Tokens are tubelets (``frame_patch_size`` frames deep) with learned
positions; each frame gets its own class token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vit_core.layers import LearnedPositionalEmbedding, PatchEmbedding
from vit_core.models.base import (
    BlockOrder,
    VisionModel,
    block_feature_info,
    layer_blocks,
    parameter_names,
    present,
    trunk_intermediates,
)
from vit_core.validation import (
    check_choice,
    check_non_negative_int,
    check_positive_ints,
    check_probability,
)
from vit_video.factorized import FactorizedEncoder, FactorizedSelfAttention
from vit_video.validation import check_video, check_video_config

VARIANTS = ("factorized_encoder", "factorized_self_attention")


class ViViT(VisionModel):
    """ViViT over ``(batch, channels, frames, height, width)`` videos.

    Arguments keep the names of vit-pytorch's ``vivit.ViViT`` (the README's ``vivit.ViT``).

    ``forward(video, mask=None)``: ``mask`` is an optional boolean ``(batch, frames)`` tensor, ``True``
    for frames to attend to; a tubelet is attended to when all its frames are.  Features are the
    temporal tokens ``(batch, [1 +] frames', dim)`` for the factorized encoder and
    ``(batch, frames', [1 +] tokens, dim)`` for factorized self-attention (``frames'`` counts tubelets).
    Videos with fewer frames or smaller frames than built for use the matching window of the
    positional grid.
    """

    def no_weight_decay(self) -> set[str]:
        """The spatial and temporal class tokens and the learned positions."""
        return parameter_names(self, "spatial_cls", "transformer.temporal_cls", "pos_embed")

    def block_order(self) -> BlockOrder | None:
        """Stem: the frames' class token, the tubelet embedding and the positions; blocks: the spatial layers,
        then the temporal layers (the temporal class token and the spatial norm with the first of them)."""
        spatial = layer_blocks(self.transformer.spatial, "transformer.spatial")
        temporal = list(layer_blocks(self.transformer.temporal, "transformer.temporal"))
        temporal[0] = (*present(self, ("transformer.temporal_cls", "transformer.spatial.norm")), *temporal[0])
        return BlockOrder(present(self, ("spatial_cls", "patch_embed", "pos_embed")), spatial + tuple(temporal))

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        image_patch_size: int | tuple[int, int],
        frames: int,
        frame_patch_size: int,
        num_classes: int,
        dim: int,
        spatial_depth: int,
        temporal_depth: int,
        heads: int,
        mlp_dim: int,
        pool: str = "cls",
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        variant: str = "factorized_encoder",
    ) -> None:
        super().__init__()
        self.input_size, self.patch_size, grid = check_video_config(
            image_size, image_patch_size, frames, frame_patch_size
        )
        self.variant = check_choice("variant", variant, VARIANTS)
        self.pool = check_choice("pool", pool, ("cls", "mean"))
        check_positive_ints(dim=dim, channels=channels, heads=heads, dim_head=dim_head, mlp_dim=mlp_dim)
        check_non_negative_int("spatial_depth", spatial_depth)
        check_non_negative_int("temporal_depth", temporal_depth)
        check_probability("dropout", dropout)
        self.channels, self.num_features = channels, dim
        self.patch_embed = PatchEmbedding(channels, self.patch_size, dim)
        self.pos_embed = LearnedPositionalEmbedding(grid, dim)
        self.spatial_cls = nn.Parameter(torch.randn(1, dim) * 0.02) if pool == "cls" else None
        self.dropout = nn.Dropout(check_probability("emb_dropout", emb_dropout))
        if variant == "factorized_encoder":
            self.transformer: nn.Module = FactorizedEncoder(
                dim, spatial_depth, temporal_depth, heads, dim_head, mlp_dim, dropout, pool
            )
        else:
            if spatial_depth != temporal_depth:
                raise ValueError(
                    f"variant='factorized_self_attention' needs spatial_depth == temporal_depth (one spatial "
                    f"and one temporal attention per layer), got {spatial_depth} and {temporal_depth}"
                )
            self.transformer = FactorizedSelfAttention(dim, spatial_depth, heads, dim_head, mlp_dim, dropout)
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)

    def _tubelet_mask(self, mask: Tensor | None, batch: int, frames: int) -> Tensor | None:
        """``(batch, frames)`` frame mask -> ``(batch, frames // frame_patch_size)`` tubelet mask."""
        if mask is None:
            return None
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor of shape (batch, frames), got {mask!r:.60}")
        if tuple(mask.shape) != (batch, frames):
            raise ValueError(f"mask must be (batch, frames)=({batch}, {frames}), got shape {tuple(mask.shape)}")
        return mask.view(batch, frames // self.patch_size[0], self.patch_size[0]).all(dim=-1)

    def tokens(self, video: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Validate; the positioned ``(batch, frames', [1 +] tokens, dim)`` tokens and the tubelet mask."""
        size = check_video(video, channels=self.channels, input_size=self.input_size, patch_size=self.patch_size)
        grid = tuple(s // p for s, p in zip(size, self.patch_size, strict=True))
        b = video.shape[0]
        tubelet_mask = self._tubelet_mask(mask, b, size[0])
        x = self.patch_embed(video) + self.pos_embed(grid)
        x = x.view(b, grid[0], grid[1] * grid[2], self.num_features)
        if self.spatial_cls is not None:
            x = torch.cat((self.spatial_cls.expand(b, grid[0], 1, -1), x), dim=2)
        return self.dropout(x), tubelet_mask

    def forward_features(self, video: Tensor, mask: Tensor | None = None) -> Tensor:
        x, tubelet_mask = self.tokens(video, mask)
        return self.transformer(x, mask=tubelet_mask)

    @property
    def feature_info(self) -> list[dict[str, object]]:
        trunk = self.transformer.temporal if self.variant == "factorized_encoder" else self.transformer
        prefix = "transformer.temporal" if self.variant == "factorized_encoder" else "transformer"
        return block_feature_info(trunk, self.num_features, self.patch_size[-1], prefix)

    def forward_intermediates(
        self,
        video: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """The tokens after the chosen blocks: of the temporal transformer (factorized encoder), or of
        each factorized layer, ``(batch, frames', [1 +] tokens, dim)`` (factorized self-attention)."""
        check_choice("output_fmt", output_fmt, ("NLC",))
        x, tubelet_mask = self.tokens(video, mask)
        return trunk_intermediates(
            self.transformer, x, indices, norm=norm, intermediates_only=intermediates_only, mask=tubelet_mask
        )

    def pool_features(self, features: Tensor) -> Tensor:
        if self.variant == "factorized_encoder":
            return features[:, 0] if self.pool == "cls" else features.mean(dim=1)
        return features[:, 0, 0] if self.pool == "cls" else features.mean(dim=(1, 2))

    def forward(self, video: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.forward_head(self.forward_features(video, mask))
