"""DeepViT: "Towards Deeper Vision Transformer" (Zhou et al., arXiv 2103.11886).

What the paper changes in ViT: re-attention.  Deeper ViTs suffer attention collapse (the maps of
deep layers become alike), so each layer mixes its heads' softmax maps with a learned ``heads x
heads`` matrix and normalises the mixed maps across heads before they weight the values:
``ReAttention(Q, K, V) = Norm(Theta^T softmax(Q K^T / sqrt(d))) V``.  The rest is ViT (the
encoder without a final norm; the pooled token is LayerNorm-ed before the head).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_core.layers import Attention
from vit_variants.class_token_vit import ClassTokenViT


class ReAttention(Attention):
    """Attention whose softmax maps are mixed across heads and LayerNorm-ed over the head axis.

    ``mix`` starts at the identity (each head keeps its own map); ``head_norm`` normalises, for
    every query-key pair, the ``heads`` mixed weights.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, dim_head, dropout)
        self.mix = nn.Parameter(torch.eye(heads))
        self.head_norm = nn.LayerNorm(heads)

    def transform_weights(self, weights: Tensor) -> Tensor:
        mixed = torch.einsum("bhij,hg->bijg", weights, self.mix)
        return self.head_norm(mixed).permute(0, 3, 1, 2)


class DeepViT(ClassTokenViT):
    """ViT with re-attention in every layer.  Arguments as vit-pytorch's ``deepvit.DeepViT``.

    The class token is always there; ``pool="mean"`` averages it with the patch tokens (as in
    vit-pytorch, so its weights import exactly).
    """

    attention_class = ReAttention
    token_attention = False
    """``vit attention`` refuses it: the recorded re-attention maps are LayerNorm-ed across the
    heads, so they are no distributions over the tokens (their head average is zero)."""
