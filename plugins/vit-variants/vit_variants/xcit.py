"""XCiT: "XCiT: Cross-Covariance Image Transformers" (El-Nouby et al., arXiv 2106.09681).

What the paper changes in ViT:

* cross-covariance attention (XCA): attention over the channels instead of the tokens.  Per head,
  queries and keys are transposed to ``(dim_head, tokens)``, L2-normalised along the tokens, and
  their ``dim_head x dim_head`` cross-covariance (scaled by a learned per-head temperature) is the
  attention map that mixes the value channels: linear cost in the number of tokens;
* local patch interaction (LPI): a residual branch of two depth-wise 3x3 convolutions (with
  BatchNorm and GELU between) on the token grid, since XCA alone exchanges no information
  between tokens directly;
* LayerScale on every branch and, as in CaiT, class-attention layers at the end (the class token
  attends over itself and the patch tokens); ``layer_dropout`` skips layers in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.layers import (
    Attention,
    DepthwiseConv2d,
    FeedForward,
    LayerScale,
    TransformerBlock,
    map_to_tokens,
    tokens_to_map,
)
from vit_core.models.base import parameter_names
from vit_core.validation import check_odd_kernel
from vit_variants.class_attention import ClassAttentionViT


class CrossCovarianceAttention(Attention):
    """XCA: each head's ``dim_head x dim_head`` map over channels, from L2-normalised queries and keys
    (over the tokens) scaled by a learned per-head temperature (initialised to 1, as in the paper).

    The weights a :class:`~vit_core.Recorder` sees are these channel maps, ``(batch, heads,
    dim_head, dim_head)``.  It takes no token mask or bias (it does not attend over tokens).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, dim_head, dropout)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        scale: float | None = None,
    ) -> Tensor:
        if mask is not None or bias is not None:
            raise ValueError("cross-covariance attention attends over channels: it takes no token mask or bias")
        q = F.normalize(q.transpose(-2, -1), dim=-1) * self.temperature
        k = F.normalize(k.transpose(-2, -1), dim=-1)
        return super().attend(q, k, v.transpose(-2, -1), scale=1.0).transpose(-2, -1)


class LocalPatchInteraction(nn.Module):
    """``(batch, tokens, dim)`` on a ``grid`` -> depth-wise conv -> BatchNorm -> GELU -> depth-wise conv."""

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        check_odd_kernel("local_patch_kernel_size", kernel_size)
        self.conv1 = DepthwiseConv2d(dim, None, kernel_size)
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.conv2 = DepthwiseConv2d(dim, None, kernel_size)

    def forward(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        return map_to_tokens(self.conv2(self.act(self.bn(self.conv1(tokens_to_map(x, grid))))))


class XCiTBlock(TransformerBlock):
    """``x + XCA(norm(x))``, then ``x + LPI(norm(x))`` on the token ``grid``, then ``x + mlp(norm(x))``,
    each branch LayerScale-d.  Needs ``grid=``; XCA mixes all tokens, so ``queries=`` is not supported."""

    supports_queries = False

    def __init__(
        self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float, kernel_size: int, layer_scale: float
    ) -> None:
        mixer = CrossCovarianceAttention(dim, heads, dim_head, dropout)
        super().__init__(mixer, FeedForward(dim, mlp_dim, dropout), dim, layer_scale=layer_scale)
        self.lpi_norm = nn.LayerNorm(dim)
        self.lpi = LocalPatchInteraction(dim, kernel_size)
        self.lpi_scale = LayerScale(dim, layer_scale)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        packing: object = None,
        *,
        grid: tuple[int, ...] | None = None,
        **unsupported: object,
    ) -> Tensor:
        if grid is None:
            raise ValueError("an XCiT block needs grid= (the token grid) for its local patch interaction")
        if mask is not None or packing is not None or any(v is not None for v in unsupported.values()):
            raise ValueError("an XCiT block takes only x and grid= (no mask, packing, queries, context or bias)")
        x = self.mix(x)
        x = x + self.drop_path(self.lpi_scale(self.lpi(self.lpi_norm(x), grid)))
        return self.feed_forward(x)


class XCiT(ClassAttentionViT):
    """Cross-covariance image transformer.  Arguments as vit-pytorch's ``xcit.XCiT``, plus ``channels``.

    ``depth`` XCA layers over the patch tokens (then a LayerNorm), ``cls_depth`` class-attention
    layers (:class:`~vit_variants.class_attention.ClassAttentionViT`).  ``layer_dropout`` skips
    layers in training only.  ``layer_scale`` sets the initial LayerScale gain (default: CaiT's
    value for ``depth``).  ``forward_features`` returns ``(batch, 1 + patches, dim)``: the class
    token's final state, then the normalised patch tokens.  ``dynamic_img_size`` and
    ``set_input_size`` run it at other sizes (positions resampled, as ViT; the local patch
    interaction works on any grid).  In :meth:`forward_intermediates`, ``norm`` is the LayerNorm
    that ends the XCA layers.
    :class:`~vit_core.Recorder` on the model records the XCA channel maps ``(batch, depth, heads,
    dim_head, dim_head)``; ``Recorder(model, layer=model.cls_transformer)`` the class token's maps
    over ``[itself, patches]``.
    """

    trunk_needs_grid = True
    patch_final_norm = True
    token_attention = False
    """``vit attention`` draws the class token's attention of the class-attention layers, not the XCA
    channel maps (see :mod:`vit_core.tools.attention_map`)."""

    def no_weight_decay(self) -> set[str]:
        """Also the per-head temperatures of cross-covariance attention (XCiT's own ``no_weight_decay``)."""
        return super().no_weight_decay() | parameter_names(self, "*.attn.temperature")

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
        local_patch_kernel_size: int = 3,
        layer_dropout: float = 0.0,
        channels: int = 3,
        layer_scale: float | None = None,
        dynamic_img_size: bool = False,
    ) -> None:
        self.local_patch_kernel_size = local_patch_kernel_size
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            num_classes=num_classes,
            dim=dim,
            depth=depth,
            cls_depth=cls_depth,
            heads=heads,
            mlp_dim=mlp_dim,
            dim_head=dim_head,
            dropout=dropout,
            emb_dropout=emb_dropout,
            layer_dropout=layer_dropout,
            channels=channels,
            layer_scale=layer_scale,
            dynamic_img_size=dynamic_img_size,
        )

    def patch_block(
        self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float, layer_scale: float
    ) -> nn.Module:
        """An XCA layer with local patch interaction."""
        return XCiTBlock(dim, heads, dim_head, mlp_dim, dropout, self.local_patch_kernel_size, layer_scale)
