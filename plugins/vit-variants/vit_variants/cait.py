"""CaiT: "Going deeper with Image Transformers" (Touvron et al., arXiv 2103.17239).

What the paper changes in ViT:

* LayerScale: every residual branch is multiplied by a learned per-channel gain initialised to a
  small value chosen from the network's depth (0.1 up to depth 18, 1e-5 up to 24, 1e-6 beyond);
* class attention: the patch tokens attend among themselves only (no class token); then a few
  class-attention layers let the class token alone attend over itself and the patch tokens;
* talking-heads attention (Shazeer et al., arXiv 2003.02436): learned head-mixing matrices just
  before and just after the softmax;
* ``layer_dropout``: in training, whole layers are skipped at random (LayerDrop).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_variants.attention import ContextAttention
from vit_variants.class_attention import ClassAttentionViT


def mix_heads(scores: Tensor, mix: Tensor) -> Tensor:
    """``out[b, g] = sum_h mix[h, g] * scores[b, h]`` over ``(batch, heads, queries, keys)``: one batched
    product over the flattened maps (an einsum spelling of it measured about 5% slower here)."""
    return torch.matmul(mix.t(), scores.flatten(2)).view_as(scores)


class TalkingHeadsAttention(ContextAttention):
    """Attention with learned ``heads x heads`` mixes of the scores (pre-softmax) and of the weights
    (post-softmax), both starting at the identity.  With ``context`` it is CaiT's class attention."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, dim_head, dropout)
        self.mix_scores = nn.Parameter(torch.eye(heads))
        self.mix_weights = nn.Parameter(torch.eye(heads))

    def transform_scores(self, scores: Tensor) -> Tensor:
        return mix_heads(scores, self.mix_scores)

    def transform_weights(self, weights: Tensor) -> Tensor:
        return mix_heads(weights, self.mix_weights)


class CaiT(ClassAttentionViT):
    """Class-attention image transformer.  Arguments as vit-pytorch's ``cait.CaiT``, plus ``channels``.

    ``depth`` talking-heads self-attention layers over the patch tokens (no final norm), then
    ``cls_depth`` talking-heads class-attention layers (:class:`~vit_variants.class_attention.ClassAttentionViT`).
    ``layer_dropout`` skips layers in training only.  ``layer_scale`` overrides the initial
    LayerScale gain (default: the paper's value for ``depth``).  ``forward_features`` returns
    ``(batch, 1 + patches, dim)``: the class token's final state, then the patch tokens.
    ``dynamic_img_size`` and ``set_input_size`` run it at other sizes (positions resampled, as ViT).
    """

    class_attention = TalkingHeadsAttention
