"""CCT: "Escaping the Big Data Paradigm with Compact Transformers" (Hassani et al., arXiv 2104.05704).

What the paper changes in ViT, to train well on small datasets with few parameters:

* a convolutional tokenizer instead of patches: ``conv -> ReLU -> max-pool`` stages, each cell of
  the last feature map a token (overlapping receptive fields, a convolutional inductive bias);
* sequence pooling instead of a class token: a learned softmax weighting of the output tokens;
* encoder layers that LayerNorm the residual stream after attention, with stochastic depth.

``cct_2`` ... ``cct_16`` are the paper's sizes (layers / heads / MLP ratio / width), also
registered as named presets ``cct-2`` ... ``cct-16``.
"""

from __future__ import annotations

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
from vit_core.models.base import VisionModel, check_output_fmt
from vit_core.models.vit import IMAGE_LAYOUT
from vit_core.validation import (
    as_tuple,
    check_choice,
    check_divisible,
    check_non_negative_int,
    check_positive_int,
    check_positive_ints,
    check_probability,
    check_tensor,
)

POSITIONAL_EMBEDDINGS = ("sine", "learnable", "none")


class CCT(VisionModel):
    """Compact Convolutional Transformer for ``(batch, channels, height, width)`` images.

    Arguments keep the names and defaults of vit-pytorch's ``cct.CCT`` (the classifier's
    ``num_layers``, ``num_heads``, ``mlp_ratio``, ``num_classes`` and ``positional_embedding``
    included).  With ``positional_embedding="none"`` any image that leaves at least one token is
    accepted; otherwise the image must be exactly ``img_size``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        embedding_dim: int = 768,
        n_input_channels: int = 3,
        n_conv_layers: int = 1,
        kernel_size: int = 7,
        stride: int = 2,
        padding: int = 3,
        pooling_kernel_size: int = 3,
        pooling_stride: int = 2,
        pooling_padding: int = 1,
        dropout_rate: float = 0.0,
        attention_dropout: float = 0.1,
        stochastic_depth_rate: float = 0.1,
        *,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        positional_embedding: str = "sine",
    ) -> None:
        super().__init__()
        self.input_size = as_tuple("img_size", img_size)
        self.channels = check_positive_int("n_input_channels", n_input_channels)
        dim = check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("num_heads", num_heads)
        check_divisible("embedding_dim", dim, "num_heads", num_heads)
        check_positive_int("n_conv_layers", n_conv_layers)
        check_non_negative_int("num_layers", num_layers)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or int(dim * mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must be a positive number (embedding_dim * mlp_ratio >= 1), got {mlp_ratio!r}")
        self.positional_embedding = check_choice("positional_embedding", positional_embedding, POSITIONAL_EMBEDDINGS)
        check_positive_ints(
            kernel_size=kernel_size,
            stride=stride,
            pooling_kernel_size=pooling_kernel_size,
            pooling_stride=pooling_stride,
        )
        check_non_negative_int("padding", padding)
        check_non_negative_int("pooling_padding", pooling_padding)
        if pooling_padding > pooling_kernel_size // 2:
            raise ValueError(
                f"pooling_padding={pooling_padding} must be at most half of pooling_kernel_size={pooling_kernel_size}"
            )
        self.tokenizer = ConvTokenizer(
            self.channels,
            dim,
            n_conv_layers=n_conv_layers,
            kernel=(kernel_size,) * 2,
            stride=(stride,) * 2,
            padding=(padding,) * 2,
            pool_kernel=(pooling_kernel_size,) * 2,
            pool_stride=(pooling_stride,) * 2,
            pool_padding=(pooling_padding,) * 2,
        )
        self.token_grid = self.tokenizer.output_grid(self.input_size)
        if min(self.token_grid) <= 0:
            raise ValueError(
                f"img_size={img_size} is too small for the tokenizer (kernel_size={kernel_size}, stride={stride}, "
                f"padding={padding}, pooling_kernel_size={pooling_kernel_size}, pooling_stride={pooling_stride}, "
                f"n_conv_layers={n_conv_layers}): it leaves a token grid of {self.token_grid}; use a larger image "
                "or smaller kernels / strides"
            )
        num_tokens = self.token_grid[0] * self.token_grid[1]
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

    def tokenize(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x``; its tokens ``(batch, tokens, embedding_dim)`` (no positions) and token grid."""
        size = check_tensor("img", x, layout=IMAGE_LAYOUT, channels=self.channels, size_name="img_size")
        if self.pos_embed is not None and size != self.input_size:
            raise ValueError(
                f"img must be img_size={self.input_size} (positional_embedding={self.positional_embedding!r} "
                f"is built for it), got shape {tuple(x.shape)}"
            )
        grid = self.tokenizer.output_grid(size)
        if min(grid) <= 0:
            raise ValueError(f"img of shape {tuple(x.shape)} is too small for the tokenizer (token grid {grid})")
        return self.tokenizer(x), grid

    def add_positions(self, tokens: Tensor) -> Tensor:
        return tokens if self.pos_embed is None else tokens + self.pos_embed((tokens.shape[1],))

    def forward_features(self, x: Tensor) -> Tensor:
        """Image -> ``(batch, tokens, embedding_dim)`` encoder output (before sequence pooling)."""
        tokens, _ = self.tokenize(x)
        return self.transformer(self.dropout(self.add_positions(tokens)))

    def pool_features(self, features: Tensor) -> Tensor:
        return self.seq_pool(features)

    @property
    def feature_info(self) -> list[dict[str, object]]:
        reduction = self.input_size[0] // max(self.token_grid[0], 1)
        return [
            {"module": f"transformer.layers.{i}", "num_chs": self.num_features, "reduction": reduction}
            for i in range(len(self.transformer.layers))
        ]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """The tokens after the chosen encoder layers (timm's meaning of ``indices``), and
        ``forward_features(x)``; ``"NCHW"`` reshapes them to the token grid's maps."""
        check_output_fmt(output_fmt)
        tokens, grid = self.tokenize(x)
        final, hidden = self.transformer.forward_intermediates(
            self.dropout(self.add_positions(tokens)), indices, norm=norm, stop_early=intermediates_only
        )
        if output_fmt == "NCHW":
            hidden = [h.transpose(1, 2).reshape(h.shape[0], h.shape[-1], *grid) for h in hidden]
        return hidden if intermediates_only else (final, hidden)


PRESETS: dict[str, dict[str, float]] = {
    "cct_2": dict(num_layers=2, num_heads=2, mlp_ratio=1, embedding_dim=128),
    "cct_4": dict(num_layers=4, num_heads=2, mlp_ratio=1, embedding_dim=128),
    "cct_6": dict(num_layers=6, num_heads=4, mlp_ratio=2, embedding_dim=256),
    "cct_7": dict(num_layers=7, num_heads=4, mlp_ratio=2, embedding_dim=256),
    "cct_8": dict(num_layers=8, num_heads=4, mlp_ratio=2, embedding_dim=256),
    "cct_14": dict(num_layers=14, num_heads=6, mlp_ratio=3, embedding_dim=384),
    "cct_16": dict(num_layers=16, num_heads=6, mlp_ratio=3, embedding_dim=384),
}
"""The paper's sizes: ``CCT-L/k`` has ``L`` layers; the tokenizer stays an argument."""


def _preset(name: str, kernel_size: int, stride: int | None, padding: int | None, kwargs: dict) -> CCT:
    """A preset's CCT; the stride and padding default from ``kernel_size`` as in the paper's code."""
    fixed = PRESETS[name]
    clash = sorted(set(fixed) & set(kwargs))
    if clash:
        raise TypeError(f"{name} fixes {', '.join(clash)}; use CCT(...) to choose them")
    stride = max(1, kernel_size // 2 - 1) if stride is None else stride
    padding = max(1, kernel_size // 2) if padding is None else padding
    return CCT(kernel_size=kernel_size, stride=stride, padding=padding, **fixed, **kwargs)


def cct_2(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: object) -> CCT:
    """CCT-2: 2 layers, 2 heads, MLP ratio 1, width 128."""
    return _preset("cct_2", kernel_size, stride, padding, kwargs)


def cct_4(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: object) -> CCT:
    """CCT-4: 4 layers, 2 heads, MLP ratio 1, width 128."""
    return _preset("cct_4", kernel_size, stride, padding, kwargs)


def cct_6(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: object) -> CCT:
    """CCT-6: 6 layers, 4 heads, MLP ratio 2, width 256."""
    return _preset("cct_6", kernel_size, stride, padding, kwargs)


def cct_7(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: object) -> CCT:
    """CCT-7: 7 layers, 4 heads, MLP ratio 2, width 256."""
    return _preset("cct_7", kernel_size, stride, padding, kwargs)


def cct_8(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: object) -> CCT:
    """CCT-8: 8 layers, 4 heads, MLP ratio 2, width 256."""
    return _preset("cct_8", kernel_size, stride, padding, kwargs)


def cct_14(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: object) -> CCT:
    """CCT-14: 14 layers, 6 heads, MLP ratio 3, width 384."""
    return _preset("cct_14", kernel_size, stride, padding, kwargs)


def cct_16(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: object) -> CCT:
    """CCT-16: 16 layers, 6 heads, MLP ratio 3, width 384."""
    return _preset("cct_16", kernel_size, stride, padding, kwargs)
