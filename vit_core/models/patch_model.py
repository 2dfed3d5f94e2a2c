"""A transformer over the patches of a fixed-size input of any dimensionality.

``ViT`` and ``SimpleViT`` here, and the 3-D (video) models of ``vit_video``, are this class with
different positional embeddings, pooling and trunk: patch embedding, optional class token,
positions for the patch grid actually seen, the transformer, pooling and a linear head.

The embedding is a sequence of documented steps (the *encoder protocol*, see
:data:`ENCODER_PROTOCOL`) that trainers compose: MAE encodes a random subset of the positioned
tokens, SimMIM swaps masked patch tokens for a mask token before positions are added, MP3 runs
the trunk on tokens without positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vit_core.layers import PatchEmbedding, patchify, pool_tokens
from vit_core.models.base import (
    BlockOrder,
    VisionModel,
    check_output_fmt,
    layer_blocks,
    parameter_names,
    present,
    trunk_intermediates,
)
from vit_core.models.resizing import enable_dynamic, resizable_positions, resize_positions
from vit_core.validation import (
    as_tuple,
    check_choice,
    check_grid,
    check_non_negative_int,
    check_positive_ints,
    check_probability,
    check_tensor,
)

IMAGE_LAYOUT = "(batch, channels, height, width)"
"""The input layout of the image models (the default ``layout`` of :class:`PatchTransformer`)."""

PATCH_POOLS = ("cls", "mean", "avg", "map")
"""The ``pool`` values of :class:`PatchTransformer`."""

ENCODER_PROTOCOL = ("num_prefix_tokens", "patches", "tokenize", "add_positions", "prepend_prefix", "encode", "embed")
"""What an encoder exposes for trainers; :class:`PatchTransformer` implements every step."""

_HEAD_READ_PATH = (
    "forward",
    "forward_features",
    "encode_input",
    "encode",
    "prepend_prefix",
    "pool_features",
    "forward_head",
)


def check_encoder(model: Any, needs: Sequence[str] = ENCODER_PROTOCOL, *, user: str = "this trainer") -> None:
    """Raise a TypeError naming the members of the encoder protocol ``model`` lacks."""
    missing = [name for name in needs if not hasattr(model, name)]
    if missing:
        raise TypeError(
            f"{user} needs an encoder implementing {', '.join(needs)} (vit_core's encoder protocol, e.g. "
            f"vit_core.ViT or SimpleViT); {type(model).__name__} lacks {', '.join(missing)}"
        )


def check_image_patches(
    image_size: int | Sequence[int], patch_size: int | Sequence[int], **positive: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The size arguments every ViT-style image model takes, checked: ``image_size`` and ``patch_size`` as
    ``(height, width)`` (an int is square), the other keyword arguments (``dim=``, ``channels=``, ...)
    positive ints; returns both sizes and the patch grid, whose sides the patch sides must divide."""
    image_size, patch_size = as_tuple("image_size", image_size), as_tuple("patch_size", patch_size)
    check_positive_ints(**positive)
    return image_size, patch_size, check_grid("image_size", image_size, "patch_size", patch_size)


class PatchTransformer(VisionModel):
    """Patch embedding -> + positions -> (+ class token) -> dropout -> transformer -> pool -> head.

    Args:
        input_size, patch_size: one int per spatial axis; sides must divide.
        channels, dim, num_classes, emb_dropout: as in ViT.
        pool: ``"cls"`` (the class token), ``"mean"`` (every token), ``"avg"`` (the patch tokens only,
            prefix tokens left out: timm's ``global_pool="avg"``) or ``"map"`` (``attention_pool``).
        positional: ``positional(grid) -> (prod(grid), dim)``, positions of the patch grid seen.
        transformer: any module mapping ``(batch, tokens, dim)`` to the same shape.
        fc_norm: LayerNorm the pooled vector before the head (for trunks without a final norm).
        norm_eps: ``eps`` of ``fc_norm`` and ``norm_pre``.
        norm_pre: LayerNorm the tokens before the trunk (CLIP's ``ln_pre``).
        registers: learned register tokens after the class token, without positions (Darcet et al.,
            "Vision Transformers Need Registers", arXiv 2309.16588).
        distill_token: a distillation token after the class token, with its own position and head
            (DeiT, arXiv 2012.12877); the logits average the two heads (timm's eval output).
        attention_pool: the module ``pool="map"`` pools with, ``(batch, tokens, dim) -> (batch, dim)``.
        class_token: prepend a class token; ``None`` means only with ``pool="cls"`` (``True`` with
            ``pool="mean"`` averages it with the patch tokens).
        layout: the expected input shape, for error messages (default: images, :data:`IMAGE_LAYOUT`).
        size_name: the constructor argument that sets ``input_size``, for error messages.
        patch_embed: the tokenizer to use instead of ``PatchEmbedding(channels, patch_size, dim)``;
            one with an ``output_grid(size)`` method (a convolutional or tokens-to-token stem)
            decides the token grid itself, and ``patch_size`` is then only its overall stride.
        dynamic_img_size: take inputs of any size the patches divide, larger than ``input_size``
            too, with the positions resampled from their 2-D grid (timm's meaning; needs a 2-D
            :class:`~vit_core.layers.LearnedPositionalEmbedding`, see :mod:`vit_core.models.resizing`).
            Without it, inputs up to ``input_size`` use the matching top-left window of the grid.
            :meth:`set_input_size` resamples the positions for good.

    Class attribute ``trunk_needs_grid``: hand the token grid to the trunk (``grid=``) in
    :meth:`forward_features` and :meth:`forward_intermediates`, for blocks that reshape tokens to a
    map.  ``to_latent`` (an identity) sees the pooled vector, for ``Extractor``/``hidden_layer``.

    The encoder protocol: :meth:`patches` / :meth:`tokenize` (validate, cut, embed),
    :meth:`add_positions`, :meth:`prepend_prefix` (``num_prefix_tokens`` tokens in front),
    :meth:`encode` (dropout, then the trunk), and ``embed = prepend_prefix(add_positions(tokenize))``.
    """

    trunk_needs_grid: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        # A subclass that changes what the head reads must state again how many leading tokens
        # that is; until it does, the model runs every block in full (never a silent pruning).
        super().__init_subclass__(**kwargs)
        if "head_reads_leading_tokens" not in cls.__dict__ and any(n in cls.__dict__ for n in _HEAD_READ_PATH):
            cls.head_reads_leading_tokens = VisionModel.head_reads_leading_tokens

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
        layout: str = IMAGE_LAYOUT,
        size_name: str = "image_size",
        patch_embed: nn.Module | None = None,
        dynamic_img_size: bool = False,
        norm_eps: float = 1e-5,
        norm_pre: bool = False,
        registers: int = 0,
        distill_token: bool = False,
        attention_pool: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.input_size, self.patch_size = tuple(input_size), tuple(patch_size)
        self.size_name = size_name
        self.patch_embed = PatchEmbedding(channels, self.patch_size, dim) if patch_embed is None else patch_embed
        self.grid = self.token_grid(self.input_size)
        self.pool = check_choice("pool", pool, PATCH_POOLS)
        if (pool == "map") != (attention_pool is not None):
            raise ValueError(
                f"pool={pool!r} with attention_pool={type(attention_pool).__name__}: pool='map' pools with the "
                "attention_pool module, and only it does"
            )
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.channels, self.layout, self.num_features = channels, layout, dim
        self.pos_embed = positional
        self.dynamic_img_size = enable_dynamic(self, positional, dynamic_img_size)
        class_token = pool == "cls" if class_token is None else class_token
        self.cls_token = nn.Parameter(torch.randn(1, dim) * 0.02) if class_token else None
        self.cls_pos = nn.Parameter(torch.randn(1, dim) * 0.02) if class_token else None
        if distill_token and not (class_token and pool == "cls"):
            raise ValueError(f"distill_token=True needs the class token and pool='cls', got pool={pool!r}")
        self.dist_token = nn.Parameter(torch.randn(1, dim) * 0.02) if distill_token else None
        self.dist_pos = nn.Parameter(torch.randn(1, dim) * 0.02) if distill_token else None
        registers = check_non_negative_int("registers", registers)
        self.reg_tokens = nn.Parameter(torch.randn(registers, dim) * 0.02) if registers else None
        if not isinstance(norm_pre, bool):
            raise TypeError(f"norm_pre must be a bool, got {norm_pre!r}")
        self.norm_pre = nn.LayerNorm(dim, eps=norm_eps) if norm_pre else nn.Identity()
        self.attn_pool = attention_pool
        self.dropout = nn.Dropout(check_probability("emb_dropout", emb_dropout))
        self.transformer = transformer
        self.fc_norm = nn.LayerNorm(dim, eps=norm_eps) if fc_norm else nn.Identity()
        self.to_latent = nn.Identity()
        self.head = self.make_head(num_classes)
        self.head_dist = self.make_head(num_classes) if distill_token else None

    def _stem_grid(self) -> Any:
        return getattr(self.patch_embed, "output_grid", None)

    def token_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        """The token grid of an input of spatial ``size`` (validated against ``size_name``)."""
        stem_grid = self._stem_grid()
        if stem_grid is None:
            return check_grid(self.size_name, size, "patch_size", self.patch_size)
        grid = tuple(stem_grid(size))
        if min(grid) <= 0:
            raise ValueError(f"{self.size_name} {tuple(size)} is too small for the tokenizer (token grid {grid})")
        return grid

    PREFIX_PARAMETERS: ClassVar[tuple[str, ...]] = ("cls_token", "cls_pos", "dist_token", "dist_pos", "reg_tokens")
    """The prefix tokens and their positions (those the configuration has)."""

    def no_weight_decay(self) -> set[str]:
        """The prefix tokens, their positions, the learned patch positions and the attention pool's query
        and q/k norm gains (timm's ``pos_embed``, ``cls_token``, ``dist_token``, ``reg_token``)."""
        return parameter_names(self, *self.PREFIX_PARAMETERS, "pos_embed", "*q_norm.weight", "*k_norm.weight")

    def block_order(self) -> BlockOrder | None:
        """Stem: the tokens, the patch embedding, the positions and ``norm_pre``; blocks: the trunk's layers."""
        stem = present(self, (*self.PREFIX_PARAMETERS, "patch_embed", "pos_embed", "norm_pre"))
        return BlockOrder(stem, layer_blocks(self.transformer, "transformer"))

    def set_input_size(self, image_size: int | Sequence[int], interpolation: str = "bicubic") -> None:
        """Run at ``image_size`` from now on: the learned positions are resampled (in float32) from their 2-D
        grid to the new one, per axis (timm's ``set_input_size``); fine-tune at that size for best results.
        The recorded ``init_config`` follows, so ``vit_core.save_model`` saves the resized model.  A model
        whose positions are not a learned 2-D table (fixed sin-cos, 3-D video grids) raises ``ValueError``."""
        resizable_positions(self, self.pos_embed)
        size = as_tuple(self.size_name, image_size, len(self.patch_size))
        grid = self.token_grid(size)
        resize_positions(self, self.pos_embed, grid, interpolation, size_name=self.size_name, size=size)
        self.input_size, self.grid = size, grid

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens :meth:`prepend_prefix` puts in front of the patch tokens (class, distillation, registers)."""
        registers = 0 if self.reg_tokens is None else self.reg_tokens.shape[0]
        return int(self.cls_token is not None) + int(self.dist_token is not None) + registers

    def patch_grid(self, x: Tensor) -> tuple[int, ...]:
        """Validate ``x`` and return its patch grid."""
        stem_grid = self._stem_grid()
        grid = check_tensor(
            "img",
            x,
            layout=self.layout,
            spatial_dims=len(self.patch_size),
            channels=self.channels,
            max_size=None if self.dynamic_img_size else self.input_size,
            patch=None if stem_grid is not None else self.patch_size,
            size_name=self.size_name,
        )
        if stem_grid is None:
            return grid
        grid = tuple(stem_grid(grid))
        if min(grid) <= 0:
            raise ValueError(f"img of shape {tuple(x.shape)} is too small for the tokenizer (token grid {grid})")
        return grid

    def patches(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x``; its raw patches ``(batch, patches, patch_dim)`` (as ``patch_embed.embed_patches``
        takes them) and its patch grid."""
        grid = self.patch_grid(x)
        return patchify(x, self.patch_size), grid

    def tokenize(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x``; its patch tokens ``(batch, patches, dim)`` (no positions) and its patch grid."""
        grid = self.patch_grid(x)
        return self.patch_embed(x), grid

    def add_positions(self, tokens: Tensor, grid: Sequence[int]) -> Tensor:
        """``tokens`` of the patch grid ``grid`` (row-major) plus their positional embeddings."""
        return tokens + self.pos_embed(tuple(grid))

    def prepend_prefix(self, tokens: Tensor) -> Tensor:
        """Put the prefix tokens in front of ``tokens`` ``(batch, n, dim)``: the class token and the
        distillation token (each with its position), then the register tokens (without)."""
        prefix = [
            token + position
            for token, position in ((self.cls_token, self.cls_pos), (self.dist_token, self.dist_pos))
            if token is not None
        ]
        if self.reg_tokens is not None:
            prefix.append(self.reg_tokens)
        if not prefix:
            return tokens
        prefix = torch.cat(prefix) if len(prefix) > 1 else prefix[0]
        return torch.cat((prefix.expand(tokens.shape[0], -1, -1), tokens), dim=1)

    def encode(self, tokens: Tensor, **trunk_kwargs: Any) -> Tensor:
        """Embedding dropout, ``norm_pre``, then the trunk, on any tokens (a subset, masked, without positions)."""
        return self.transformer(self.norm_pre(self.dropout(tokens)), **trunk_kwargs)

    def embed(self, x: Tensor) -> Tensor:
        """Input -> ``(batch, tokens, dim)`` tokens with positions (prefix tokens first), before dropout."""
        return self.prepend_prefix(self.add_positions(*self.tokenize(x)))

    def trunk_kwargs(self, grid: Sequence[int]) -> dict[str, Any]:
        """What the trunk is given besides the tokens: the token grid when ``trunk_needs_grid``."""
        return {"grid": tuple(grid)} if self.trunk_needs_grid else {}

    def encode_input(self, x: Tensor, **trunk_kwargs: Any) -> Tensor:
        """The protocol's steps in order: tokenize, add positions, prepend prefix tokens, encode."""
        tokens, grid = self.tokenize(x)
        tokens = self.prepend_prefix(self.add_positions(tokens, grid))
        return self.encode(tokens, **self.trunk_kwargs(grid), **trunk_kwargs)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.encode_input(x)

    def pool_features(self, features: Tensor) -> Tensor:
        if self.attn_pool is not None:
            pooled = self.attn_pool(features)
        elif self.pool == "avg":
            pooled = features[:, self.num_prefix_tokens :].mean(dim=1)
        elif self.dist_token is not None:
            pooled = (features[:, 0] + features[:, 1]) / 2
        else:
            pooled = pool_tokens(features, self.pool)
        return self.to_latent(self.fc_norm(pooled))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        if self.head_dist is None or pre_logits:
            return super().forward_head(features, pre_logits)
        cls, dist = (self.to_latent(self.fc_norm(features[:, i])) for i in (0, 1))
        return (self.head(cls) + self.head_dist(dist)) / 2

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.dist_token is not None:
            self.head_dist = self.make_head(num_classes)

    def _as_map(self, tokens: Tensor, grid: Sequence[int], position: int) -> Tensor:
        """Patch tokens of one intermediate as a ``(batch, dim, height, width)`` map."""
        patches = tokens[:, self.num_prefix_tokens :]
        if patches.shape[1] != math.prod(grid):
            raise ValueError(
                f"intermediate {position} holds {patches.shape[1]} patch tokens, not the {tuple(grid)} grid "
                "(tokens were merged or sampled); use output_fmt='NLC'"
            )
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], *grid)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        layers = getattr(self.transformer, "layers", ())
        reduction = max(self.patch_size)
        return [
            {"module": f"transformer.layers.{i}", "num_chs": self.num_features, "reduction": reduction}
            for i in range(len(layers))
        ]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """The tokens after the blocks chosen by ``indices`` (timm's meaning), and ``forward_features(x)``.

        ``output_fmt="NLC"`` gives ``(batch, tokens, dim)`` (prefix tokens included);
        ``"NCHW"`` gives patch-token maps ``(batch, dim, height, width)`` (2-D inputs).
        ``norm`` applies the trunk's final norm to each intermediate.
        """
        check_output_fmt(output_fmt, spatial_dims=len(self.patch_size))
        tokens, grid = self.tokenize(x)
        tokens = self.norm_pre(self.dropout(self.prepend_prefix(self.add_positions(tokens, grid))))
        out = trunk_intermediates(
            self.transformer,
            tokens,
            indices,
            norm=norm,
            intermediates_only=intermediates_only,
            **self.trunk_kwargs(grid),
        )
        hidden = out if intermediates_only else out[1]
        if output_fmt == "NCHW":
            hidden = [self._as_map(h, grid, i) for i, h in enumerate(hidden)]
        return hidden if intermediates_only else (out[0], hidden)
