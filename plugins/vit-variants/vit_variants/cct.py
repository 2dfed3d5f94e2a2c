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

from collections.abc import Callable
from typing import Any

from torch import Tensor

from vit_core.layers import ConvTokenizer, check_conv_geometry
from vit_core.layers.cct import GEOMETRY
from vit_core.models.cct import CompactTransformer, check_cct_config
from vit_core.models.patch_model import IMAGE_LAYOUT
from vit_core.validation import as_tuple, check_positive_int, check_tensor
from vit_variants.plugin import CCT_SIZES


class CCT(CompactTransformer):
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
        input_size = as_tuple("img_size", img_size)
        channels = check_positive_int("n_input_channels", n_input_channels)
        check_cct_config(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            n_conv_layers=n_conv_layers,
            num_layers=num_layers,
            mlp_ratio=mlp_ratio,
            positional_embedding=positional_embedding,
        )
        named = (
            ("kernel_size", kernel_size),
            ("stride", stride),
            ("padding", padding),
            ("pooling_kernel_size", pooling_kernel_size),
            ("pooling_stride", pooling_stride),
            ("pooling_padding", pooling_padding),
        )
        geometry = check_conv_geometry(**{part: (value,) * 2 for part, value in zip(GEOMETRY, named, strict=True)})
        tokenizer = ConvTokenizer(channels, embedding_dim, n_conv_layers=n_conv_layers, **geometry)
        grid = tokenizer.output_grid(input_size)
        if min(grid) <= 0:
            raise ValueError(
                f"img_size={img_size} is too small for the tokenizer (kernel_size={kernel_size}, stride={stride}, "
                f"padding={padding}, pooling_kernel_size={pooling_kernel_size}, pooling_stride={pooling_stride}, "
                f"n_conv_layers={n_conv_layers}): it leaves a token grid of {grid}; use a larger image "
                "or smaller kernels / strides"
            )
        super().__init__(
            tokenizer=tokenizer,
            input_size=input_size,
            channels=channels,
            reduction=input_size[0] // grid[0],
            embedding_dim=embedding_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
            positional_embedding=positional_embedding,
            dropout_rate=dropout_rate,
            attention_dropout=attention_dropout,
            stochastic_depth_rate=stochastic_depth_rate,
        )

    def check_input(self, x: Tensor) -> tuple[int, ...]:
        size = check_tensor("img", x, layout=IMAGE_LAYOUT, channels=self.channels, size_name="img_size")
        if self.pos_embed is not None and size != self.input_size:
            raise ValueError(
                f"img must be img_size={self.input_size} (positional_embedding={self.positional_embedding!r} "
                f"is built for it), got shape {tuple(x.shape)}"
            )
        return size


def _preset(layers: int) -> Callable[..., CCT]:
    """vit-pytorch's ``cct_{layers}``: the paper's CCT-``layers`` sizes (:data:`vit_variants.plugin.CCT_SIZES`);
    the tokenizer stays an argument, its stride and padding defaulting from ``kernel_size`` as in the
    paper's code."""
    fixed = CCT_SIZES[layers]
    name = f"cct_{layers}"

    def build(*, kernel_size: int = 3, stride: int | None = None, padding: int | None = None, **kwargs: Any) -> CCT:
        clash = sorted(set(fixed) & set(kwargs))
        if clash:
            raise TypeError(f"{name} fixes {', '.join(clash)}; use CCT(...) to choose them")
        stride = max(1, kernel_size // 2 - 1) if stride is None else stride
        padding = max(1, kernel_size // 2) if padding is None else padding
        return CCT(kernel_size=kernel_size, stride=stride, padding=padding, **fixed, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"CCT-{layers}: {fixed['num_layers']} layers, {fixed['num_heads']} heads, MLP ratio {fixed['mlp_ratio']}, "
        f"width {fixed['embedding_dim']}."
    )
    return build


cct_2 = _preset(2)
cct_4 = _preset(4)
cct_6 = _preset(6)
cct_7 = _preset(7)
cct_8 = _preset(8)
cct_14 = _preset(14)
cct_16 = _preset(16)
