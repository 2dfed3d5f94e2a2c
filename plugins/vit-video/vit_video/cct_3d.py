"""3D CCT: "Escaping the Big Data Paradigm with Compact Transformers" (Hassani et al., arXiv 2104.05704)
for video.

Changes to ViT: a convolutional tokenizer (3-D convolutions here) instead of patches, sequence
pooling (a learned softmax weighting of the tokens) instead of a class token, stochastic depth,
and encoder layers that LayerNorm the residual stream after attention.  Positions are learned,
fixed sinusoidal or absent (``positional_embedding``).
"""

from __future__ import annotations

from torch import Tensor

from vit_core.layers import ConvTokenizer, check_conv_geometry
from vit_core.models.cct import CompactTransformer, check_cct_config
from vit_core.validation import as_tuple, check_positive_int, check_tensor
from vit_video.validation import VIDEO_LAYOUT, check_video


class CCT3D(CompactTransformer):
    """Compact Convolutional Transformer for ``(batch, channels, frames, height, width)`` videos.

    Arguments keep the names and defaults of vit-pytorch's ``cct_3d.CCT`` (including the
    classifier's ``num_layers``, ``num_heads``, ``mlp_ratio``, ``num_classes``,
    ``stochastic_depth_rate`` and ``positional_embedding``); ``dropout_rate`` and
    ``attention_dropout``, fixed there, are arguments here with the same values.  With
    ``positional_embedding="none"`` any video size that leaves at least one token is accepted;
    otherwise the video must be exactly ``num_frames`` frames of ``img_size``.
    """

    input_name = "video"

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
        height, width = as_tuple("img_size", img_size)
        input_size = (check_positive_int("num_frames", num_frames), height, width)
        channels = check_positive_int("n_input_channels", n_input_channels)
        check_cct_config(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            n_conv_layers=n_conv_layers,
            num_layers=num_layers,
            mlp_ratio=mlp_ratio,
            positional_embedding=positional_embedding,
        )
        frame_padding = frame_kernel_size // 2 if frame_padding is None else frame_padding
        if frame_pooling_padding is None:
            frame_pooling_padding = frame_pooling_kernel_size // 2
        geometry = check_conv_geometry(
            kernel=(("frame_kernel_size", frame_kernel_size), *(("kernel_size", kernel_size),) * 2),
            stride=(("frame_stride", frame_stride), *(("stride", stride),) * 2),
            padding=(("frame_padding", frame_padding), *(("padding", padding),) * 2),
            pool_kernel=(
                ("frame_pooling_kernel_size", frame_pooling_kernel_size),
                *(("pooling_kernel_size", pooling_kernel_size),) * 2,
            ),
            pool_stride=(("frame_pooling_stride", frame_pooling_stride), *(("pooling_stride", pooling_stride),) * 2),
            pool_padding=(
                ("frame_pooling_padding", frame_pooling_padding),
                *(("pooling_padding", pooling_padding),) * 2,
            ),
        )
        tokenizer = ConvTokenizer(channels, embedding_dim, n_conv_layers=n_conv_layers, **geometry)
        grid = tokenizer.output_grid(input_size)
        if min(grid) <= 0:
            raise ValueError(
                f"img_size={img_size} with num_frames={num_frames} is too small for the tokenizer: it "
                f"leaves a token grid of {grid}; use a larger input or smaller kernels / strides"
            )
        super().__init__(
            tokenizer=tokenizer,
            input_size=input_size,
            channels=channels,
            reduction=input_size[-1] // grid[-1],  # spatial stride of the tokenizer
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
        if self.pos_embed is None:
            check_tensor("video", x, layout=VIDEO_LAYOUT, spatial_dims=3, channels=self.channels)
            return tuple(x.shape[2:])
        return check_video(x, channels=self.channels, input_size=self.input_size, exact=True)
