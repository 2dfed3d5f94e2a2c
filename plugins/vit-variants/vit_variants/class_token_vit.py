"""The ViT layout vit-pytorch's single-scale variants share (ViT, arXiv 2010.11929).

A class token and learned positions, pre-norm blocks without a final norm, the pooled token
LayerNorm-ed before the head.  DeepViT, the ViT for small datasets and the learnable-memory ViT
are this layout with another attention (and, for the small-dataset ViT, another patch
embedding); each declares only that.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from vit_core.layers import Attention, FeedForward, LearnedPositionalEmbedding, Transformer, TransformerBlock
from vit_core.models.patch_model import PatchTransformer, check_image_patches


class ClassTokenViT(PatchTransformer):
    """``attention_class(dim, heads, dim_head, dropout)`` in every block (:meth:`build_block` builds
    the whole block); :meth:`build_patch_embed` gives the patch embedding (``None``: the core's).
    ``pool="mean"`` averages every token, the class token included (as vit-pytorch does, so its
    weights import exactly).  ``dynamic_img_size`` and ``set_input_size`` run it at other sizes (the
    learned positions resampled, as :class:`vit_core.ViT`)."""

    attention_class: ClassVar[type[Attention]] = Attention

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
        pool: str = "cls",
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        dynamic_img_size: bool = False,
    ) -> None:
        image_size, patch_size, grid = check_image_patches(
            image_size, patch_size, dim=dim, heads=heads, mlp_dim=mlp_dim, dim_head=dim_head, channels=channels
        )

        def block(_: int) -> nn.Module:
            return self.build_block(dim, heads, dim_head, mlp_dim, dropout)

        super().__init__(
            input_size=image_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool=pool,
            positional=LearnedPositionalEmbedding(grid, dim),
            transformer=Transformer(dim, depth, final_norm=False, block=block),
            emb_dropout=emb_dropout,
            fc_norm=True,
            class_token=True,
            patch_embed=type(self).build_patch_embed(dim, patch_size, channels),
            dynamic_img_size=dynamic_img_size,
        )

    def build_block(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float) -> nn.Module:
        """One encoder layer: pre-norm ``attention_class`` then a pre-norm feed-forward."""
        mixer = self.attention_class(dim, heads, dim_head, dropout)
        return TransformerBlock(mixer, FeedForward(dim, mlp_dim, dropout), dim)

    @classmethod
    def build_patch_embed(cls, dim: int, patch_size: tuple[int, int], channels: int) -> nn.Module | None:
        """The patch embedding module, or ``None`` for the core's (LayerNorm, Linear, LayerNorm)."""
        return None
