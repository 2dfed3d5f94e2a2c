"""3D CCT: "Escaping the Big Data Paradigm with Compact Transformers" (Hassani et al., arXiv 2104.05704)
for video.

Changes to ViT: a convolutional tokenizer (3-D convolutions here) instead of patches, sequence
pooling (a learned softmax weighting of the tokens) instead of a class token, stochastic depth,
and encoder layers that LayerNorm the residual stream after attention.  Positions are learned,
fixed sinusoidal or absent (``positional_embedding``).
"""

from __future__ import annotations

from collections.abc import Sequence

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
)
from vit_core.models.base import VisionModel, block_feature_info, trunk_intermediates
from vit_core.validation import (
    as_tuple,
    check_choice,
    check_divisible,
    check_non_negative_int,
    check_positive_int,
    check_probability,
    check_tensor,
)
from vit_video.validation import VIDEO_LAYOUT, check_video

POSITIONAL_EMBEDDINGS = ("sine", "learnable", "none")


class CCT3D(VisionModel):
    """Compact Convolutional Transformer for ``(batch, channels, frames, height, width)`` videos.

    Arguments keep the names and defaults of vit-pytorch's ``cct_3d.CCT`` (including the
    classifier's ``num_layers``, ``num_heads``, ``mlp_ratio``, ``num_classes``,
    ``stochastic_depth_rate`` and ``positional_embedding``); ``dropout_rate`` and
    ``attention_dropout``, fixed there, are arguments here with the same values.  With
    ``positional_embedding="none"`` any video size that leaves at least one token is accepted;
    otherwise the video must be exactly ``num_frames`` frames of ``img_size``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        num_frames: int = 8,
        embedding_dim: int = 768,
        n_input_channels: int = 3,
        n_conv_layers: int = 1,
        frame_stride: int = 1,
        frame_kernel_size: int = 3,
        frame_padding: int | None = None,
        frame_pooling_kernel_size: int = 1,
        frame_pooling_stride: int = 1,
        frame_pooling_padding: int | None = None,
        kernel_size: int = 7,
        stride: int = 2,
        padding: int = 3,
        pooling_kernel_size: int = 3,
        pooling_stride: int = 2,
        pooling_padding: int = 1,
        *,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        stochastic_depth_rate: float = 0.1,
        positional_embedding: str = "sine",
        dropout_rate: float = 0.0,
        attention_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        height, width = as_tuple("img_size", img_size)
        self.input_size = (check_positive_int("num_frames", num_frames), height, width)
        self.channels = check_positive_int("n_input_channels", n_input_channels)
        dim = check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("num_heads", num_heads)
        check_divisible("embedding_dim", dim, "num_heads", num_heads)
        check_positive_int("n_conv_layers", n_conv_layers)
        check_non_negative_int("num_layers", num_layers)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or int(dim * mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must be a positive number (embedding_dim * mlp_ratio >= 1), got {mlp_ratio!r}")
        self.positional_embedding = check_choice("positional_embedding", positional_embedding, POSITIONAL_EMBEDDINGS)
        frame_padding = frame_kernel_size // 2 if frame_padding is None else frame_padding
        if frame_pooling_padding is None:
            frame_pooling_padding = frame_pooling_kernel_size // 2
        geometry = _check_geometry(
            kernel=(("frame_kernel_size", frame_kernel_size), ("kernel_size", kernel_size)),
            stride=(("frame_stride", frame_stride), ("stride", stride)),
            padding=(("frame_padding", frame_padding), ("padding", padding)),
            pool_kernel=(
                ("frame_pooling_kernel_size", frame_pooling_kernel_size),
                ("pooling_kernel_size", pooling_kernel_size),
            ),
            pool_stride=(("frame_pooling_stride", frame_pooling_stride), ("pooling_stride", pooling_stride)),
            pool_padding=(("frame_pooling_padding", frame_pooling_padding), ("pooling_padding", pooling_padding)),
        )
        self.tokenizer = ConvTokenizer(self.channels, dim, n_conv_layers=n_conv_layers, **geometry)
        self.token_grid = self.tokenizer.output_grid(self.input_size)
        if min(self.token_grid) <= 0:
            raise ValueError(
                f"img_size={img_size} with num_frames={num_frames} is too small for the tokenizer: it "
                f"leaves a token grid of {self.token_grid}; use a larger input or smaller kernels / strides"
            )
        num_tokens = self.token_grid[0] * self.token_grid[1] * self.token_grid[2]
        if positional_embedding == "learnable":
            self.pos_embed: nn.Module | None = LearnedPositionalEmbedding((num_tokens,), dim)
            nn.init.trunc_normal_(self.pos_embed.weight, std=0.2)
        elif positional_embedding == "sine":
            self.pos_embed = FixedPositionalEmbedding(sinusoidal_1d(num_tokens, dim))
        else:
            self.pos_embed = None
        self.dropout = nn.Dropout(check_probability("dropout_rate", dropout_rate))
        check_probability("attention_dropout", attention_dropout)
        check_probability("stochastic_depth_rate", stochastic_depth_rate)
        drop_paths = drop_path_rates(stochastic_depth_rate, num_layers)
        mlp_dim = int(dim * mlp_ratio)
        self.transformer = Transformer(
            dim,
            num_layers,
            block=lambda i: CCTBlock(
                dim,
                num_heads,
                mlp_dim,
                dropout=dropout_rate,
                attention_dropout=attention_dropout,
                drop_path=drop_paths[i],
            ),
        )
        self.seq_pool = SequencePool(dim)
        self.num_features = dim
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)
        for module in (self.transformer, self.seq_pool, self.head):
            if module is not None:
                module.apply(cct_init_weights)

    def tokens(self, x: Tensor) -> Tensor:
        """Validate the video; its positioned tokens ``(batch, tokens, embedding_dim)`` before dropout."""
        if self.pos_embed is None:
            check_tensor("video", x, layout=VIDEO_LAYOUT, spatial_dims=3, channels=self.channels)
            grid = self.tokenizer.output_grid(x.shape[2:])
            if min(grid) <= 0:
                raise ValueError(f"video of shape {tuple(x.shape)} is too small for the tokenizer (token grid {grid})")
        else:
            check_video(x, channels=self.channels, input_size=self.input_size, exact=True)
        tokens = self.tokenizer(x)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed((tokens.shape[1],))
        return tokens

    def forward_features(self, x: Tensor) -> Tensor:
        """Video -> ``(batch, tokens, embedding_dim)`` encoder output."""
        return self.transformer(self.dropout(self.tokens(x)))

    @property
    def feature_info(self) -> list[dict[str, object]]:
        reduction = self.input_size[-1] // self.token_grid[-1]  # spatial stride of the tokenizer
        return block_feature_info(self.transformer, self.num_features, reduction)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """The tokens after the encoder layers chosen by ``indices`` (timm's meaning)."""
        check_choice("output_fmt", output_fmt, ("NLC",))
        tokens = self.dropout(self.tokens(x))
        return trunk_intermediates(self.transformer, tokens, indices, norm=norm, intermediates_only=intermediates_only)

    def pool_features(self, features: Tensor) -> Tensor:
        return self.seq_pool(features)


def _check_geometry(**parts: tuple[tuple[str, int], tuple[str, int]]) -> dict[str, tuple[int, int, int]]:
    """``{"kernel": (("frame_kernel_size", 3), ("kernel_size", 7)), ...}`` -> ``{"kernel": (3, 7, 7), ...}``.

    Sizes and strides must be positive, paddings non-negative, and a max-pool's padding at most
    half its kernel (what ``nn.MaxPool3d`` accepts).
    """
    out = {}
    for part, ((frame_name, frame_value), (name, value)) in parts.items():
        check = check_non_negative_int if part.endswith("padding") else check_positive_int
        out[part] = (check(frame_name, frame_value), check(name, value), value)
    pools = zip(parts["pool_padding"], parts["pool_kernel"], strict=True)
    for (pad_name, pad), (kernel_name, kernel) in pools:
        if pad > kernel // 2:
            raise ValueError(f"{pad_name}={pad} must be at most half of {kernel_name}={kernel}")
    return out
