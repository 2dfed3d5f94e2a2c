"""Building blocks shared by every model of the ecosystem."""

from vit_core.layers.attention import Attention, CrossAttention, HeadNorm
from vit_core.layers.cct import CCTBlock, ConvTokenizer, cct_init_weights, check_conv_geometry, conv_output_size
from vit_core.layers.feedforward import ACTIVATIONS, FeedForward, QuickGELU, activation_by_name
from vit_core.layers.packing import Bucket, SequencePacking
from vit_core.layers.patch import ChannelsLastPatchEmbedding, PatchEmbedding, patchify
from vit_core.layers.pooling import POOLS, AttentionPool, LatentAttentionPool, SequencePool, pool_tokens
from vit_core.layers.positional import (
    FactorizedPositionalEmbedding,
    FixedPositionalEmbedding,
    LearnedPositionalEmbedding,
    grid_coordinates,
    grid_window,
    sincos_2d,
    sinusoidal_1d,
)
from vit_core.layers.regularization import DropPath, LayerScale, drop_path_rates
from vit_core.layers.spatial import (
    ChannelLayerNorm,
    DepthwiseConv2d,
    RelativePositionBias,
    map_to_tokens,
    relative_position_index,
    tokens_to_map,
    window_merge,
    window_partition,
)
from vit_core.layers.transformer import Transformer, TransformerBlock, is_observed, layer_norm, resolve_indices

__all__ = [
    "ACTIVATIONS",
    "POOLS",
    "Attention",
    "AttentionPool",
    "Bucket",
    "CCTBlock",
    "ChannelLayerNorm",
    "ChannelsLastPatchEmbedding",
    "ConvTokenizer",
    "CrossAttention",
    "DepthwiseConv2d",
    "DropPath",
    "FactorizedPositionalEmbedding",
    "FeedForward",
    "FixedPositionalEmbedding",
    "HeadNorm",
    "LatentAttentionPool",
    "LayerScale",
    "LearnedPositionalEmbedding",
    "PatchEmbedding",
    "QuickGELU",
    "RelativePositionBias",
    "SequencePacking",
    "SequencePool",
    "Transformer",
    "TransformerBlock",
    "activation_by_name",
    "cct_init_weights",
    "check_conv_geometry",
    "conv_output_size",
    "drop_path_rates",
    "grid_coordinates",
    "grid_window",
    "is_observed",
    "layer_norm",
    "map_to_tokens",
    "patchify",
    "pool_tokens",
    "relative_position_index",
    "resolve_indices",
    "sincos_2d",
    "sinusoidal_1d",
    "tokens_to_map",
    "window_merge",
    "window_partition",
]
