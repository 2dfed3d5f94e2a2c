"""Turning tokens into one vector per image: class token, mean, or attention pooling."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_core.layers.attention import CrossAttention
from vit_core.layers.feedforward import Activation, FeedForward
from vit_core.layers.packing import SequencePacking
from vit_core.validation import check_choice

POOLS = ("cls", "mean")


def pool_tokens(x: Tensor, pool: str) -> Tensor:
    """``(batch, tokens, dim) -> (batch, dim)``: the first (class) token, or the mean of all tokens."""
    check_choice("pool", pool, POOLS)
    return x[:, 0] if pool == "cls" else x.mean(dim=1)


class SequencePool(nn.Module):
    """CCT's SeqPool (Hassani et al., arXiv 2104.05704): a learned softmax weighting of the tokens,
    ``(batch, tokens, dim) -> (batch, dim)``.

    The score has no bias: a constant added to every token's score leaves the softmax unchanged, so
    such a bias could never learn (importers drop the reference's).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.score(x).softmax(dim=1)
        return (weights.transpose(1, 2) @ x).squeeze(1)


class AttentionPool(nn.Module):
    """A learned query attends over each sequence's tokens (multihead attention pooling,
    as NaViT uses it, arXiv 2307.06304); with ``residual`` the query is added back."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        *,
        qk_norm: str | None = None,
        attn_scale: float | None = None,
        norm_bias: bool = True,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(dim) * 0.02)
        self.norm = nn.LayerNorm(dim, bias=norm_bias)
        self.attn = CrossAttention(dim, heads, dim_head, qk_norm=qk_norm, scale=attn_scale, out_bias=False)
        self.residual = residual

    def forward(self, tokens: Tensor, packing: SequencePacking | None = None) -> Tensor:
        """Dense ``(batch, tokens, dim) -> (batch, dim)``; packed ``(1, total, dim) -> (sequences, dim)``."""
        if packing is None:
            count, query_packing = tokens.shape[0], None
            queries = self.query.expand(count, 1, -1)
        else:  # one query per packed sequence, themselves packed on the token axis
            count, query_packing = packing.num_sequences, packing.with_length(1)
            queries = self.query.expand(1, count, -1)
        out = self.attn(self.norm(queries), tokens, packing=query_packing, context_packing=packing)
        if self.residual:
            out = out + queries
        return out.reshape(count, -1)


class LatentAttentionPool(nn.Module):
    """Multihead attention pooling with a learned latent query (SigLIP's ``map`` head, Zhai et al.,
    arXiv 2303.15343; timm's ``AttentionPoolLatent``): ``(batch, tokens, dim) -> (batch, dim)``.

    The latent attends over every token (queries and keys/values projected with biases), the output
    is projected, then a pre-norm MLP is added: ``y = proj(attn(latent, x)); y + mlp(norm(y))``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        mlp_dim: int,
        *,
        norm_eps: float = 1e-5,
        activation: Activation = nn.GELU,
        gated: bool = False,
    ) -> None:
        super().__init__()
        self.latent = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attn = CrossAttention(dim, heads, dim_head, qkv_bias=True, project_out=True)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = FeedForward(dim, mlp_dim, activation=activation, gated=gated)

    def forward(self, tokens: Tensor) -> Tensor:
        out = self.attn(self.latent.expand(tokens.shape[0], -1, -1), tokens)
        out = out + self.mlp(self.norm(out))
        return out[:, 0]
