"""Class attention, as CaiT introduced it and XCiT reuses it ("Going deeper with Image Transformers",
Touvron et al., arXiv 2103.17239, section 3).

The patch tokens go through the patch layers with no class token among them; then a few
class-attention layers let the class token alone attend over itself and the patch tokens (its
keys and values are ``cat(class, patches)``, the patches stay as they are).  LayerScale is on
every branch (its initial gain chosen from the depth) and ``layer_dropout`` skips whole layers in
training (LayerDrop).  CaiT and XCiT differ only in their blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vit_core.layers import (
    Attention,
    FeedForward,
    LearnedPositionalEmbedding,
    Transformer,
    TransformerBlock,
    resolve_indices,
    tokens_to_map,
)
from vit_core.models.base import BlockOrder, check_output_fmt, layer_blocks
from vit_core.models.patch_model import PatchTransformer, check_image_patches
from vit_core.validation import check_non_negative_int, check_probability
from vit_variants.attention import ContextAttention


def layer_scale_init(depth: int) -> float:
    """CaiT's initial LayerScale gain for a network of ``depth`` layers (section 2 of the paper)."""
    if depth <= 18:
        return 0.1
    if depth <= 24:
        return 1e-5
    return 1e-6


class ClassAttentionViT(PatchTransformer):
    """``depth`` patch layers (:meth:`patch_block`, a final norm with ``patch_final_norm``), then
    ``cls_depth`` class-attention layers (:meth:`class_block`) for a learned class token.

    Arguments as vit-pytorch's ``cait.CaiT``, plus ``channels``, ``layer_scale`` (the initial
    LayerScale gain; default :func:`layer_scale_init` of ``depth``) and ``dynamic_img_size`` (with
    :meth:`set_input_size`: other sizes, positions resampled as in :class:`vit_core.ViT`).
    ``forward_features`` returns ``(batch, 1 + patches, dim)``: the class token's final state, then
    the patch tokens.
    """

    class_attention_trunk = "cls_transformer"
    """``vit attention`` draws the class token's attention from these layers (see
    :mod:`vit_core.tools.attention_map`)."""

    class_attention: ClassVar[type[Attention]] = ContextAttention
    """The attention of the class-attention layers (called with ``context=`` the patch tokens)."""

    patch_final_norm: ClassVar[bool] = False
    """End the patch layers with a LayerNorm."""

    PREFIX_PARAMETERS = ("class_token",)
    """The learned class token (it joins the patch tokens in the class-attention layers only)."""

    def block_order(self) -> BlockOrder | None:
        """The patch layers, then the class-attention layers (``cls_transformer``), in depth order."""
        order = super().block_order()
        return BlockOrder(order.stem, order.blocks + layer_blocks(self.cls_transformer, "cls_transformer"))

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        num_classes: int,
        dim: int,
        depth: int,
        cls_depth: int,
        heads: int,
        mlp_dim: int,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        layer_dropout: float = 0.0,
        channels: int = 3,
        layer_scale: float | None = None,
        dynamic_img_size: bool = False,
    ) -> None:
        image_size, patch_size, grid = check_image_patches(
            image_size, patch_size, dim=dim, heads=heads, mlp_dim=mlp_dim, dim_head=dim_head, channels=channels
        )
        check_non_negative_int("depth", depth)
        check_non_negative_int("cls_depth", cls_depth)
        check_probability("layer_dropout", layer_dropout)
        block = (
            dim,
            heads,
            dim_head,
            mlp_dim,
            dropout,
            layer_scale_init(depth) if layer_scale is None else layer_scale,
        )
        super().__init__(
            input_size=image_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool="cls",
            positional=LearnedPositionalEmbedding(grid, dim),
            transformer=Transformer(
                dim,
                depth,
                final_norm=self.patch_final_norm,
                block=lambda _: self.patch_block(*block),
                layer_drop=layer_dropout,
            ),
            emb_dropout=emb_dropout,
            fc_norm=True,
            class_token=False,
            dynamic_img_size=dynamic_img_size,
        )
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.cls_transformer = Transformer(
            dim, cls_depth, final_norm=False, block=lambda _: self.class_block(*block), layer_drop=layer_dropout
        )

    def class_block(
        self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float, layer_scale: float
    ) -> nn.Module:
        """A class-attention layer: pre-norm :attr:`class_attention`, then a pre-norm feed-forward, LayerScale-d."""
        mixer = self.class_attention(dim, heads, dim_head, dropout)
        return TransformerBlock(mixer, FeedForward(dim, mlp_dim, dropout), dim, layer_scale=layer_scale)

    def patch_block(
        self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float, layer_scale: float
    ) -> nn.Module:
        """A patch layer; by default a class-attention layer used as self-attention (no ``context``)."""
        return self.class_block(dim, heads, dim_head, mlp_dim, dropout, layer_scale)

    def encode(self, tokens: Tensor, **trunk_kwargs: Any) -> Tensor:
        """Dropout, the patch layers, then the class-attention layers: ``(batch, 1 + patches, dim)``."""
        return self.attend_class(super().encode(tokens, **trunk_kwargs))

    def attend_class(self, patches: Tensor) -> Tensor:
        """The class token through the class-attention layers over ``patches``, put in front of them."""
        cls = self.cls_transformer(self.class_token.expand(patches.shape[0], -1, -1), context=patches)
        return torch.cat((cls, patches), dim=1)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One entry per patch layer, then one per class-attention layer."""
        modules = [f"transformer.layers.{i}" for i in range(len(self.transformer.layers))]
        modules += [f"cls_transformer.layers.{i}" for i in range(len(self.cls_transformer.layers))]
        reduction = max(self.patch_size)
        return [{"module": m, "num_chs": self.num_features, "reduction": reduction} for m in modules]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """The tokens after the chosen layers, counted in order: the patch layers, then the
        class-attention layers (``indices`` as timm's), and ``forward_features(x)``.

        Each intermediate is ``(batch, 1 + patches, dim)``: the class token as it stands after that
        layer (its learned initial value during the patch layers), then the patch tokens (``norm``:
        through the patch layers' final norm, when they have one).  ``output_fmt="NCHW"`` gives the
        patch tokens' maps.
        """
        check_output_fmt(output_fmt)
        depth = len(self.transformer.layers)
        chosen = resolve_indices(indices, depth + len(self.cls_transformer.layers))
        patch_layers, class_layers = [i for i in chosen if i < depth], [i - depth for i in chosen if i >= depth]
        tokens, grid = self.tokenize(x)
        tokens = self.dropout(self.add_positions(tokens, grid))
        patches, hidden = self.transformer.forward_intermediates(
            tokens,
            patch_layers,
            norm=norm,
            stop_early=intermediates_only and not class_layers,
            **self.trunk_kwargs(grid),
        )
        cls = self.class_token.expand(patches.shape[0], -1, -1)
        hidden = [torch.cat((cls, h), dim=1) for h in hidden]
        if class_layers or not intermediates_only:
            cls, hidden_cls = self.cls_transformer.forward_intermediates(
                cls, class_layers, norm=norm, stop_early=intermediates_only, context=patches
            )
            hidden += [torch.cat((c, patches), dim=1) for c in hidden_cls]
        if output_fmt == "NCHW":
            hidden = [tokens_to_map(h[:, 1:], grid) for h in hidden]
        return hidden if intermediates_only else (torch.cat((cls, patches), dim=1), hidden)
