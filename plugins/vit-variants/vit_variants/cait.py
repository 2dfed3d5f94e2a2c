"""CaiT: "Going deeper with Image Transformers" (Touvron et al., arXiv 2103.17239).

What the paper changes in ViT:

* LayerScale: every residual branch is multiplied by a learned per-channel gain initialised to a
  small value chosen from the network's depth (0.1 up to depth 18, 1e-5 up to 24, 1e-6 beyond);
* class attention: the patch tokens attend among themselves only (no class token); then a few
  class-attention layers let the class token alone attend over itself and the patch tokens;
* talking-heads attention (Shazeer et al., arXiv 2003.02436): learned head-mixing matrices just
  before and just after the softmax;
* ``layer_dropout``: in training, whole layers are skipped at random (LayerDrop).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.layers import FeedForward, LearnedPositionalEmbedding, Transformer, TransformerBlock, resolve_indices
from vit_core.models.base import check_output_fmt
from vit_core.models.patch_model import PatchTransformer
from vit_core.models.vit import IMAGE_LAYOUT
from vit_core.validation import as_tuple, check_grid, check_non_negative_int, check_positive_ints, check_probability
from vit_variants.attention import ContextAttention


def layer_scale_init(depth: int) -> float:
    """CaiT's initial LayerScale gain for a network of ``depth`` layers (section 2 of the paper)."""
    if depth <= 18:
        return 0.1
    if depth <= 24:
        return 1e-5
    return 1e-6


def mix_heads(scores: Tensor, mix: Tensor) -> Tensor:
    """``out[b, g] = sum_h mix[h, g] * scores[b, h]`` over ``(batch, heads, queries, keys)``: one batched
    product over the flattened maps (an einsum spelling of it measured about 5% slower here)."""
    return torch.matmul(mix.t(), scores.flatten(2)).view_as(scores)


class TalkingHeadsAttention(ContextAttention):
    """Attention with learned ``heads x heads`` mixes of the scores (pre-softmax) and of the weights
    (post-softmax), both starting at the identity.  With ``context`` it is CaiT's class attention."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, dim_head, dropout)
        self.mix_scores = nn.Parameter(torch.eye(heads))
        self.mix_weights = nn.Parameter(torch.eye(heads))

    def transform_scores(self, scores: Tensor) -> Tensor:
        return mix_heads(scores, self.mix_scores)

    def transform_weights(self, weights: Tensor) -> Tensor:
        return mix_heads(weights, self.mix_weights)


def cait_trunk(
    dim: int,
    depth: int,
    *,
    heads: int,
    dim_head: int,
    mlp_dim: int,
    dropout: float,
    layer_dropout: float,
    layer_scale: float,
) -> Transformer:
    """``depth`` talking-heads blocks with LayerScale and no final norm."""

    def block(_: int) -> nn.Module:
        mixer = TalkingHeadsAttention(dim, heads, dim_head, dropout)
        return TransformerBlock(mixer, FeedForward(dim, mlp_dim, dropout), dim, layer_scale=layer_scale)

    return Transformer(dim, depth, final_norm=False, block=block, layer_drop=layer_dropout)


class CaiT(PatchTransformer):
    """Class-attention image transformer.  Arguments as vit-pytorch's ``cait.CaiT``, plus ``channels``.

    ``depth`` self-attention layers over the patch tokens, then ``cls_depth`` class-attention layers.
    ``layer_dropout`` skips layers in training only.  ``layer_scale`` overrides the initial
    LayerScale gain (default: the paper's value for ``depth``).  ``forward_features`` returns
    ``(batch, 1 + patches, dim)``: the class token's final state, then the patch tokens.
    ``dynamic_img_size`` and ``set_input_size`` run it at other sizes (positions resampled, as ViT).
    """

    class_attention_trunk = "cls_transformer"
    """``vit attention`` draws the class token's attention from these layers (see :mod:`vit_core.tools.attention_map`)."""

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
        image_size, patch_size = as_tuple("image_size", image_size), as_tuple("patch_size", patch_size)
        check_positive_ints(dim=dim, heads=heads, mlp_dim=mlp_dim, dim_head=dim_head, channels=channels)
        check_non_negative_int("depth", depth)
        check_non_negative_int("cls_depth", cls_depth)
        check_probability("layer_dropout", layer_dropout)
        grid = check_grid("image_size", image_size, "patch_size", patch_size)
        trunk = functools.partial(
            cait_trunk,
            dim,
            heads=heads,
            dim_head=dim_head,
            mlp_dim=mlp_dim,
            dropout=dropout,
            layer_dropout=layer_dropout,
            layer_scale=layer_scale_init(depth) if layer_scale is None else layer_scale,
        )
        super().__init__(
            input_size=image_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool="cls",
            positional=LearnedPositionalEmbedding(grid, dim),
            transformer=trunk(depth),
            emb_dropout=emb_dropout,
            fc_norm=True,
            class_token=False,
            layout=IMAGE_LAYOUT,
            dynamic_img_size=dynamic_img_size,
        )
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.cls_transformer = trunk(cls_depth)

    def encode(self, tokens: Tensor, **trunk_kwargs: Any) -> Tensor:
        """Dropout, the patch trunk, then the class-attention layers: ``(batch, 1 + patches, dim)``."""
        return self.attend_class(super().encode(tokens, **trunk_kwargs))

    def attend_class(self, patches: Tensor) -> Tensor:
        """The class token through the class-attention layers over ``patches``, put in front of them."""
        cls = self.cls_transformer(self.class_token.expand(patches.shape[0], -1, -1), context=patches)
        return torch.cat((cls, patches), dim=1)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return class_attention_feature_info(self)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """See :func:`class_attention_intermediates`."""
        return class_attention_intermediates(self, x, indices, norm, output_fmt, intermediates_only)


def class_attention_feature_info(model: PatchTransformer) -> list[dict[str, Any]]:
    """One entry per self-attention layer, then one per class-attention layer."""
    modules = [f"transformer.layers.{i}" for i in range(len(model.transformer.layers))]
    modules += [f"cls_transformer.layers.{i}" for i in range(len(model.cls_transformer.layers))]
    reduction = max(model.patch_size)
    return [{"module": m, "num_chs": model.num_features, "reduction": reduction} for m in modules]


def class_attention_intermediates(
    model: PatchTransformer,
    x: Tensor,
    indices: int | Sequence[int] | None,
    norm: bool,
    output_fmt: str,
    intermediates_only: bool,
) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
    """``forward_intermediates`` of a model with class-attention layers after its patch layers (CaiT, XCiT).

    The layers are counted in order, the self-attention layers of ``model.transformer`` then the
    class-attention layers of ``model.cls_transformer`` (``indices`` as timm's).  Each intermediate
    is ``(batch, 1 + patches, dim)``: the class token as it stands after that layer (its learned
    initial value during the patch layers), then the patch tokens (``norm``: through the patch
    trunk's final norm).  ``output_fmt="NCHW"`` gives the patch tokens' maps.  The final output is
    ``forward_features(x)``.
    """
    check_output_fmt(output_fmt)
    depth = len(model.transformer.layers)
    chosen = resolve_indices(indices, depth + len(model.cls_transformer.layers))
    patch_layers, class_layers = [i for i in chosen if i < depth], [i - depth for i in chosen if i >= depth]
    tokens, grid = model.tokenize(x)
    tokens = model.dropout(model.add_positions(tokens, grid))
    patches, hidden = model.transformer.forward_intermediates(
        tokens, patch_layers, norm=norm, stop_early=intermediates_only and not class_layers, **model.trunk_kwargs(grid)
    )
    cls = model.class_token.expand(patches.shape[0], -1, -1)
    hidden = [torch.cat((cls, h), dim=1) for h in hidden]
    if class_layers or not intermediates_only:
        cls, hidden_cls = model.cls_transformer.forward_intermediates(
            cls, class_layers, norm=norm, stop_early=intermediates_only, context=patches
        )
        hidden += [torch.cat((c, patches), dim=1) for c in hidden_cls]
    if output_fmt == "NCHW":
        hidden = [h[:, 1:].transpose(1, 2).reshape(h.shape[0], h.shape[-1], *grid) for h in hidden]
    return hidden if intermediates_only else (torch.cat((cls, patches), dim=1), hidden)
