"""CrossViT: "CrossViT: Cross-Attention Multi-Scale Vision Transformer for Image Classification"
(Chen et al., arXiv 2103.14899).

What the paper changes in ViT: two ViT branches see the image at two patch sizes, a small-patch
(fine, ``sm_``) and a large-patch (coarse, ``lg_``) one.  A multi-scale block runs each branch's
encoder, then exchanges information between the branches by cross attention through the class
tokens only: each branch's class token (projected to the other branch's width) attends over
itself and the other branch's patch tokens and is projected back, which costs linear, not
quadratic, time in the tokens.  The two class tokens are classified and the logits summed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vit_core.layers import LearnedPositionalEmbedding, Transformer, resolve_indices, tokens_to_map
from vit_core.layers.positional import INTERPOLATIONS
from vit_core.models.base import BlockOrder, VisionModel, check_output_fmt, layer_blocks, parameter_names
from vit_core.models.patch_model import IMAGE_LAYOUT, PatchTransformer
from vit_core.models.resizing import check_dynamic_img_size, record_input_size
from vit_core.validation import (
    as_tuple,
    check_choice,
    check_grid,
    check_non_negative_int,
    check_positive_ints,
    check_tensor,
)
from vit_variants.attention import ContextAttention

Pair = tuple[Tensor, Tensor]
BRANCHES = ("sm", "lg")
"""The two branches, small-patch then large-patch, as their arguments' prefixes name them."""


class CrossScaleAttention(ContextAttention):
    """A class token ``(batch, 1, dim)`` attends over itself and another branch's patch tokens.

    The core attention at the other branch's width ``other_dim``, with the class token projected to
    that width (when it differs) and LayerNorm-ed before, and the output projected back: queries,
    keys and values from the token, keys and values from the patches (:class:`ContextAttention`).
    """

    def __init__(self, dim: int, other_dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__(other_dim, heads, dim_head, dropout)
        self.project_in = nn.Linear(dim, other_dim) if dim != other_dim else nn.Identity()
        self.norm = nn.LayerNorm(other_dim)
        self.project_back = nn.Linear(other_dim, dim) if dim != other_dim else nn.Identity()

    def forward(self, cls: Tensor, context: Tensor | None = None, **kwargs: object) -> Tensor:
        if context is None:
            raise ValueError("cross-scale attention needs context= (the other branch's patch tokens)")
        return self.project_back(super().forward(self.norm(self.project_in(cls)), context, **kwargs))


class CrossScaleLayer(nn.Module):
    """One round of cross attention: the small branch's class token over the large branch's patches,
    then the large branch's class token over the small branch's patches (both residual)."""

    def __init__(self, sm_dim: int, lg_dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.sm_attend_lg = CrossScaleAttention(sm_dim, lg_dim, heads, dim_head, dropout)
        self.lg_attend_sm = CrossScaleAttention(lg_dim, sm_dim, heads, dim_head, dropout)

    def forward(self, sm_cls: Tensor, sm_patches: Tensor, lg_cls: Tensor, lg_patches: Tensor) -> Pair:
        sm_cls = sm_cls + self.sm_attend_lg(sm_cls, context=lg_patches)
        lg_cls = lg_cls + self.lg_attend_sm(lg_cls, context=sm_patches)
        return sm_cls, lg_cls


class MultiScaleBlock(nn.Module):
    """Each branch's encoder (core :class:`~vit_core.layers.Transformer`), then ``cross_attn_depth``
    rounds of cross attention between the class tokens."""

    def __init__(self, sm_encoder: Transformer, lg_encoder: Transformer, cross: Sequence[CrossScaleLayer]) -> None:
        super().__init__()
        self.sm_encoder, self.lg_encoder = sm_encoder, lg_encoder
        self.cross = nn.ModuleList(cross)

    def forward(self, sm: Tensor, lg: Tensor) -> Pair:
        sm, lg = self.sm_encoder(sm), self.lg_encoder(lg)
        (sm_cls, sm_patches), (lg_cls, lg_patches) = (sm[:, :1], sm[:, 1:]), (lg[:, :1], lg[:, 1:])
        for layer in self.cross:
            sm_cls, lg_cls = layer(sm_cls, sm_patches, lg_cls, lg_patches)
        return torch.cat((sm_cls, sm_patches), dim=1), torch.cat((lg_cls, lg_patches), dim=1)


class MultiScaleEncoder(nn.Module):
    """``depth`` multi-scale blocks: ``(sm_tokens, lg_tokens) -> (sm_tokens, lg_tokens)``."""

    def __init__(self, blocks: Sequence[MultiScaleBlock]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(blocks)

    def forward(self, sm: Tensor, lg: Tensor) -> Pair:
        for block in self.layers:
            sm, lg = block(sm, lg)
        return sm, lg

    def forward_intermediates(
        self, sm: Tensor, lg: Tensor, indices: int | Sequence[int] | None = None, *, stop_early: bool = False
    ) -> tuple[Pair, list[Pair]]:
        """Also the ``(sm_tokens, lg_tokens)`` pair after each block chosen by ``indices`` (timm's meaning)."""
        chosen = resolve_indices(indices, len(self.layers))
        stop = chosen[-1] if stop_early and chosen else len(self.layers) - 1
        hidden = []
        for i, block in enumerate(self.layers[: stop + 1]):
            sm, lg = block(sm, lg)
            if i in chosen:
                hidden.append((sm, lg))
        return (sm, lg), hidden


def _branch(
    image_size: tuple[int, ...], patch_size: tuple[int, ...], channels: int, dim: int, dropout: float, dynamic: bool
) -> PatchTransformer:
    """One branch's embedding: patches, class token and learned positions (a trunk-less patch transformer)."""
    return PatchTransformer(
        input_size=image_size,
        patch_size=patch_size,
        channels=channels,
        dim=dim,
        num_classes=0,
        pool="cls",
        positional=LearnedPositionalEmbedding(check_grid("image_size", image_size, "patch_size", patch_size), dim),
        transformer=nn.Identity(),
        emb_dropout=dropout,
        dynamic_img_size=dynamic,
    )


class CrossViT(VisionModel):
    """Two-branch multi-scale ViT.  Arguments as vit-pytorch's ``cross_vit.CrossViT``.

    ``forward_features`` returns the pair ``(sm_tokens, lg_tokens)``, each ``(batch, 1 + patches,
    dim)`` of its branch (``multi_scale_encoder``'s output, which ``Extractor(v,
    layer_name="multi_scale_encoder")`` reads).  ``forward_head(..., pre_logits=True)`` gives both
    LayerNorm-ed class tokens concatenated, ``(batch, sm_dim + lg_dim)``; one linear head on that
    equals the sum of the two branches' heads.  ``forward_intermediates`` returns one branch's
    tokens per multi-scale block: the small-patch branch's by default (the finer grid, which
    ``feature_info`` describes), the large-patch branch's with ``branch="lg"``.

    :class:`~vit_core.Recorder` returns a list of maps in call order: per multi-scale block, the
    small branch's self-attention layers ``(batch, heads, 1 + sm_patches, 1 + sm_patches)``, the
    large branch's, then per cross-attention round the small class token over
    ``[itself, large patches]`` ``(batch, heads, 1, 1 + lg_patches)`` and the large class token over
    ``[itself, small patches]`` ``(batch, heads, 1, 1 + sm_patches)``.

    ``dynamic_img_size=True`` takes images of any size both patch sizes divide, larger ones too (each
    branch's learned positions resampled from its 2-D grid, as :class:`vit_core.ViT`);
    :meth:`set_input_size` resamples them for good.
    """

    def no_weight_decay(self) -> set[str]:
        """Each branch's class token, its position and the learned patch positions."""
        return parameter_names(self, "*_embed.cls_token", "*_embed.cls_pos", "*_embed.pos_embed.*")

    def block_order(self) -> BlockOrder | None:
        """Stem: both branches' embeddings; blocks: the multi-scale encoder's layers."""
        return BlockOrder(("sm_embed", "lg_embed"), layer_blocks(self.multi_scale_encoder, "multi_scale_encoder"))

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        num_classes: int,
        sm_dim: int,
        lg_dim: int,
        sm_patch_size: int | tuple[int, int] = 12,
        sm_enc_depth: int = 1,
        sm_enc_heads: int = 8,
        sm_enc_mlp_dim: int = 2048,
        sm_enc_dim_head: int = 64,
        lg_patch_size: int | tuple[int, int] = 16,
        lg_enc_depth: int = 4,
        lg_enc_heads: int = 8,
        lg_enc_mlp_dim: int = 2048,
        lg_enc_dim_head: int = 64,
        cross_attn_depth: int = 2,
        cross_attn_heads: int = 8,
        cross_attn_dim_head: int = 64,
        depth: int = 3,
        dropout: float = 0.1,
        emb_dropout: float = 0.1,
        channels: int = 3,
        dynamic_img_size: bool = False,
    ) -> None:
        super().__init__()
        self.dynamic_img_size = check_dynamic_img_size(dynamic_img_size)
        self.input_size = as_tuple("image_size", image_size)
        self.patch_sizes = {"sm_patch_size": as_tuple("sm_patch_size", sm_patch_size)}
        self.patch_sizes["lg_patch_size"] = as_tuple("lg_patch_size", lg_patch_size)
        for name, patch in self.patch_sizes.items():
            check_grid("image_size", self.input_size, name, patch)
        check_positive_ints(
            sm_dim=sm_dim,
            lg_dim=lg_dim,
            sm_enc_heads=sm_enc_heads,
            sm_enc_mlp_dim=sm_enc_mlp_dim,
            sm_enc_dim_head=sm_enc_dim_head,
            lg_enc_heads=lg_enc_heads,
            lg_enc_mlp_dim=lg_enc_mlp_dim,
            lg_enc_dim_head=lg_enc_dim_head,
            cross_attn_heads=cross_attn_heads,
            cross_attn_dim_head=cross_attn_dim_head,
            channels=channels,
        )
        for name, value in (("sm_enc_depth", sm_enc_depth), ("lg_enc_depth", lg_enc_depth)):
            check_non_negative_int(name, value)
        check_non_negative_int("cross_attn_depth", cross_attn_depth)
        check_non_negative_int("depth", depth)
        self.channels = channels
        branch = functools.partial(_branch, self.input_size, channels=channels, dropout=emb_dropout)
        self.sm_embed = branch(self.patch_sizes["sm_patch_size"], dim=sm_dim, dynamic=dynamic_img_size)
        self.lg_embed = branch(self.patch_sizes["lg_patch_size"], dim=lg_dim, dynamic=dynamic_img_size)
        self.multi_scale_encoder = MultiScaleEncoder(
            MultiScaleBlock(
                Transformer(sm_dim, sm_enc_depth, sm_enc_heads, sm_enc_dim_head, sm_enc_mlp_dim, dropout),
                Transformer(lg_dim, lg_enc_depth, lg_enc_heads, lg_enc_dim_head, lg_enc_mlp_dim, dropout),
                [
                    CrossScaleLayer(sm_dim, lg_dim, cross_attn_heads, cross_attn_dim_head, dropout)
                    for _ in range(cross_attn_depth)
                ],
            )
            for _ in range(depth)
        )
        self.sm_norm, self.lg_norm = nn.LayerNorm(sm_dim), nn.LayerNorm(lg_dim)
        self.num_features = sm_dim + lg_dim
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)

    def embed(self, img: Tensor) -> Pair:
        """Validate ``img``; both branches' tokens (class token first, positions added, dropout applied)."""
        max_size = None if self.dynamic_img_size else self.input_size
        size = check_tensor("img", img, layout=IMAGE_LAYOUT, channels=self.channels, max_size=max_size)
        for name, patch in self.patch_sizes.items():
            check_grid("img spatial size", size, name, patch)
        return self.sm_embed.encode(self.sm_embed.embed(img)), self.lg_embed.encode(self.lg_embed.embed(img))

    def set_input_size(self, image_size: int | tuple[int, int], interpolation: str = "bicubic") -> None:
        """Run at ``image_size`` from now on: each branch's learned positions resampled from its 2-D grid
        (:meth:`vit_core.models.patch_model.PatchTransformer.set_input_size`); ``init_config`` follows."""
        size = as_tuple("image_size", image_size)
        for name, patch in self.patch_sizes.items():
            check_grid("image_size", size, name, patch)
        check_choice("interpolation", interpolation, INTERPOLATIONS)
        self.sm_embed.set_input_size(size, interpolation)
        self.lg_embed.set_input_size(size, interpolation)
        self.input_size = size
        record_input_size(self, "image_size", size)

    def forward_features(self, img: Tensor) -> Pair:
        return self.multi_scale_encoder(*self.embed(img))

    def pool_features(self, features: Pair) -> Tensor:
        sm, lg = features
        return torch.cat((self.sm_norm(sm[:, 0]), self.lg_norm(lg[:, 0])), dim=-1)

    @property
    def feature_info(self) -> list[dict[str, object]]:
        """One entry per multi-scale block, for the small-patch branch (``forward_intermediates``' default)."""
        num_chs, reduction = self.sm_norm.normalized_shape[0], max(self.patch_sizes["sm_patch_size"])
        return [
            {"module": f"multi_scale_encoder.layers.{i}", "num_chs": num_chs, "reduction": reduction}
            for i in range(len(self.multi_scale_encoder.layers))
        ]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
        branch: str = "sm",
    ) -> tuple[Pair, list[Tensor]] | list[Tensor]:
        """One branch's tokens ``(batch, 1 + patches, dim)`` after each chosen multi-scale block, and
        ``forward_features(x)`` (the pair of both branches' final tokens).

        ``branch``: ``"sm"`` (the default), the small-patch branch, or ``"lg"``, the large-patch one.
        ``output_fmt="NCHW"`` reshapes the patch tokens to the branch's ``(batch, dim, h, w)`` map (class
        token dropped).  ``norm`` changes nothing: each branch's encoder already ends with its LayerNorm.
        """
        check_output_fmt(output_fmt)
        side = BRANCHES.index(check_choice("branch", branch, BRANCHES))
        final, pairs = self.multi_scale_encoder.forward_intermediates(
            *self.embed(x), indices, stop_early=intermediates_only
        )
        hidden = [pair[side] for pair in pairs]
        if output_fmt == "NCHW":
            patch = self.patch_sizes[f"{branch}_patch_size"]
            grid = tuple(s // p for s, p in zip(x.shape[-2:], patch))
            hidden = [tokens_to_map(t[:, 1:], grid) for t in hidden]
        return hidden if intermediates_only else (final, hidden)
