"""A transformer over the patches of a fixed-size input of any dimensionality.

``ViT`` and ``SimpleViT`` here, and the 3-D (video) models of ``vit_video``, are this class with
different positional embeddings, pooling and trunk: patch embedding, optional class token,
positions for the patch grid actually seen, the transformer, pooling and a linear head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vit_core.layers import PatchEmbedding, pool_tokens
from vit_core.models.base import VisionModel
from vit_core.validation import check_choice, check_grid, check_non_negative_int, check_probability, check_tensor


class PatchTransformer(VisionModel):
    """Patch embedding -> (+ class token) -> + positions -> dropout -> transformer -> pool -> head.

    Args:
        input_size, patch_size: one int per spatial axis; sides must divide.
        channels, dim, num_classes, pool, emb_dropout: as in ViT.
        positional: ``positional(grid) -> (prod(grid), dim)``, positions of the patch grid seen.
        transformer: any module mapping ``(batch, tokens, dim)`` to the same shape.
        fc_norm: LayerNorm the pooled vector before the head (for trunks without a final norm).
        class_token: prepend a class token; ``None`` means only with ``pool="cls"`` (``True`` with
            ``pool="mean"`` averages it with the patch tokens).
        layout: the expected input shape, for error messages.
    """

    def __init__(
        self,
        *,
        input_size: Sequence[int],
        patch_size: Sequence[int],
        channels: int,
        dim: int,
        num_classes: int,
        pool: str,
        positional: nn.Module,
        transformer: nn.Module,
        emb_dropout: float = 0.0,
        fc_norm: bool = False,
        class_token: bool | None = None,
        layout: str,
    ) -> None:
        super().__init__()
        self.input_size, self.patch_size = tuple(input_size), tuple(patch_size)
        self.grid = check_grid("image_size", self.input_size, "patch_size", self.patch_size)
        self.pool = check_choice("pool", pool, ("cls", "mean"))
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.channels, self.layout, self.num_features = channels, layout, dim
        self.patch_embed = PatchEmbedding(channels, self.patch_size, dim)
        self.pos_embed = positional
        class_token = pool == "cls" if class_token is None else class_token
        self.cls_token = nn.Parameter(torch.randn(1, dim) * 0.02) if class_token else None
        self.cls_pos = nn.Parameter(torch.randn(1, dim) * 0.02) if class_token else None
        self.dropout = nn.Dropout(check_probability("emb_dropout", emb_dropout))
        self.transformer = transformer
        self.fc_norm = nn.LayerNorm(dim) if fc_norm else nn.Identity()
        self.head = self.make_head(num_classes)

    def patch_grid(self, x: Tensor) -> tuple[int, ...]:
        """Validate ``x`` and return its patch grid."""
        return check_tensor(
            "img",
            x,
            layout=self.layout,
            spatial_dims=len(self.patch_size),
            channels=self.channels,
            max_size=self.input_size,
            patch=self.patch_size,
        )

    def embed(self, x: Tensor) -> Tensor:
        """Input -> ``(batch, tokens, dim)`` tokens with positions (class token first), before dropout."""
        grid = self.patch_grid(x)
        tokens = self.patch_embed(x) + self.pos_embed(grid)
        if self.cls_token is not None:
            cls = (self.cls_token + self.cls_pos).expand(tokens.shape[0], 1, -1)
            tokens = torch.cat((cls, tokens), dim=1)
        return tokens

    def forward_features(self, x: Tensor) -> Tensor:
        return self.transformer(self.dropout(self.embed(x)))

    def pool_features(self, features: Tensor) -> Tensor:
        return self.fc_norm(pool_tokens(features, self.pool))
