"""Building blocks shared by every model of the ecosystem."""

from vit_core.layers.attention import Attention, Bucket, CrossAttention, HeadNorm, SequencePacking
from vit_core.layers.feedforward import FeedForward
from vit_core.layers.patch import PatchEmbedding, patchify
from vit_core.layers.pooling import POOLS, AttentionPool, SequencePool, pool_tokens
from vit_core.layers.positional import (
    FactorizedPositionalEmbedding,
    FixedPositionalEmbedding,
    LearnedPositionalEmbedding,
    grid_coordinates,
    grid_window,
    sincos_2d,
)
from vit_core.layers.regularization import DropPath
from vit_core.layers.transformer import Transformer, TransformerBlock, layer_norm

__all__ = [
    "POOLS",
    "Attention",
    "AttentionPool",
    "Bucket",
    "CrossAttention",
    "DropPath",
    "FactorizedPositionalEmbedding",
    "FeedForward",
    "FixedPositionalEmbedding",
    "HeadNorm",
    "LearnedPositionalEmbedding",
    "PatchEmbedding",
    "SequencePacking",
    "SequencePool",
    "Transformer",
    "TransformerBlock",
    "grid_coordinates",
    "grid_window",
    "layer_norm",
    "patchify",
    "pool_tokens",
    "sincos_2d",
]
