"""The Compact Convolutional Transformer around its tokenizer (Hassani et al., arXiv 2104.05704).

CCT cuts no patches: a convolutional tokenizer (:class:`~vit_core.layers.ConvTokenizer`) makes
every cell of its last feature map a token; positions are learned, fixed sine or absent; the
encoder layers LayerNorm the residual stream after attention (:class:`~vit_core.layers.CCTBlock`,
with stochastic depth); a learned softmax weighting of the tokens
(:class:`~vit_core.layers.SequencePool`) replaces the class token.  :class:`CompactTransformer`
is all of that; the 2-D CCT (vit-variants) and the 3-D one (vit-video) add only the tokenizer's
geometry and their input checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from vit_core.layers import (
    CCTBlock,
    ConvTokenizer,
    FixedPositionalEmbedding,
    LearnedPositionalEmbedding,
    SequencePool,
    Transformer,
    cct_init_weights,
    drop_path_rates,
    sinusoidal_1d,
    tokens_to_map,
)
from vit_core.models.base import (
    OUTPUT_FORMATS,
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
    check_divisible,
    check_non_negative_int,
    check_positive_int,
    check_probability,
)

POSITIONAL_EMBEDDINGS = ("sine", "learnable", "none")


def check_cct_config(
    *,
    embedding_dim: int,
    num_heads: int,
    n_conv_layers: int,
    num_layers: int,
    mlp_ratio: float,
    positional_embedding: str,
) -> None:
    """Check the arguments every CCT shares (vit-pytorch's names), before its tokenizer is built."""
    check_positive_int("embedding_dim", embedding_dim)
    check_positive_int("num_heads", num_heads)
    check_divisible("embedding_dim", embedding_dim, "num_heads", num_heads)
    check_positive_int("n_conv_layers", n_conv_layers)
    check_non_negative_int("num_layers", num_layers)
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or int(embedding_dim * mlp_ratio) < 1:
        raise ValueError(f"mlp_ratio must be a positive number (embedding_dim * mlp_ratio >= 1), got {mlp_ratio!r}")
    check_choice("positional_embedding", positional_embedding, POSITIONAL_EMBEDDINGS)


class CompactTransformer(VisionModel):
    """A CCT on the tokens of ``tokenizer``: positions, CCT encoder layers, sequence pooling and a head.

    Args:
        tokenizer: the convolutional tokenizer, its last stage ``embedding_dim`` wide.
        input_size: the spatial size the model is built for (the positions' token count follows).
        channels: input channels.
        reduction: the input side over the token grid's side, for :attr:`feature_info`.
        others: as vit-pytorch's ``cct.CCT`` (checked by :func:`check_cct_config`).

    A subclass validates its inputs in :meth:`check_input` and names them by ``input_name``.
    """

    input_name: ClassVar[str] = "img"
    """The input's name in error messages."""

    def __init__(
        self,
        *,
        tokenizer: ConvTokenizer,
        input_size: Sequence[int],
        channels: int,
        reduction: int,
        embedding_dim: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float,
        num_classes: int,
        positional_embedding: str,
        dropout_rate: float,
        attention_dropout: float,
        stochastic_depth_rate: float,
    ) -> None:
        super().__init__()
        dim = embedding_dim
        self.input_size, self.channels, self.reduction = tuple(input_size), channels, reduction
        self.positional_embedding = positional_embedding
        self.tokenizer = tokenizer
        self.token_grid = tokenizer.output_grid(self.input_size)
        num_tokens = math.prod(self.token_grid)
        if positional_embedding == "learnable":
            self.pos_embed: nn.Module | None = LearnedPositionalEmbedding((num_tokens,), dim)
            nn.init.trunc_normal_(self.pos_embed.weight, std=0.2)
        elif positional_embedding == "sine":
            self.pos_embed = FixedPositionalEmbedding(sinusoidal_1d(num_tokens, dim))
        else:
            self.pos_embed = None
        self.dropout = nn.Dropout(check_probability("dropout_rate", dropout_rate))
        check_probability("attention_dropout", attention_dropout)
        rates = drop_path_rates(check_probability("stochastic_depth_rate", stochastic_depth_rate), num_layers)
        mlp_dim = int(dim * mlp_ratio)
        self.transformer = Transformer(
            dim,
            num_layers,
            block=lambda i: CCTBlock(
                dim, num_heads, mlp_dim, dropout=dropout_rate, attention_dropout=attention_dropout, drop_path=rates[i]
            ),
        )
        self.seq_pool = SequencePool(dim)
        self.num_features = dim
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)
        for module in (self.transformer, self.seq_pool, self.head):
            if module is not None:
                module.apply(cct_init_weights)

    def no_weight_decay(self) -> set[str]:
        """The learned positions (none with sinusoidal ones)."""
        return parameter_names(self, "pos_embed")

    def block_order(self) -> BlockOrder | None:
        """Stem: the convolutional tokenizer and the positions; blocks: the transformer's layers."""
        return BlockOrder(present(self, ("tokenizer", "pos_embed")), layer_blocks(self.transformer, "transformer"))

    def check_input(self, x: Tensor) -> tuple[int, ...]:
        """Validate an input; return its spatial size."""
        raise NotImplementedError

    def tokenize(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x``; its tokens ``(batch, tokens, embedding_dim)`` (no positions) and token grid."""
        grid = self.tokenizer.output_grid(self.check_input(x))
        if min(grid) <= 0:
            raise ValueError(
                f"{self.input_name} of shape {tuple(x.shape)} is too small for the tokenizer (token grid {grid})"
            )
        return self.tokenizer(x), grid

    def add_positions(self, tokens: Tensor) -> Tensor:
        return tokens if self.pos_embed is None else tokens + self.pos_embed((tokens.shape[1],))

    def tokens(self, x: Tensor) -> Tensor:
        """Validate ``x``; its positioned tokens ``(batch, tokens, embedding_dim)`` before dropout."""
        return self.add_positions(self.tokenize(x)[0])

    def forward_features(self, x: Tensor) -> Tensor:
        """Input -> ``(batch, tokens, embedding_dim)`` encoder output (before sequence pooling)."""
        return self.transformer(self.dropout(self.tokens(x)))

    def pool_features(self, features: Tensor) -> Tensor:
        return self.seq_pool(features)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return block_feature_info(self.transformer, self.num_features, self.reduction)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """The tokens after the encoder layers chosen by ``indices`` (timm's meaning), and
        ``forward_features(x)``; ``"NCHW"`` (2-D inputs) reshapes them to the token grid's maps."""
        check_choice("output_fmt", output_fmt, OUTPUT_FORMATS if len(self.input_size) == 2 else ("NLC",))
        tokens, grid = self.tokenize(x)
        tokens = self.dropout(self.add_positions(tokens))
        out = trunk_intermediates(self.transformer, tokens, indices, norm=norm, intermediates_only=intermediates_only)
        final, hidden = (None, out) if intermediates_only else out
        if output_fmt == "NCHW":
            hidden = [tokens_to_map(h, grid) for h in hidden]
        return hidden if intermediates_only else (final, hidden)
