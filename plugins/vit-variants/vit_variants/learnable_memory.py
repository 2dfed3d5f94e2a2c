"""Learnable memory: "Fine-tuning Image Transformers using Learnable Memory" (Sandler et al., arXiv 2203.15243).

What the paper changes: a trained ViT is fine-tuned to a new task without touching its weights.
Each layer gets a few learned memory tokens that serve as extra keys and values, and the new task
gets its own class token and head.  An attention mask keeps the original tokens from seeing the
memories or the new class token, so the backbone's own outputs are unchanged and several task
:class:`Adapter` objects can share one frozen backbone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vit_core.models.base import VisionModel
from vit_core.validation import check_non_negative_int
from vit_variants.attention import ContextAttention
from vit_variants.class_token_vit import ClassTokenViT


class LearnableMemoryViT(ClassTokenViT):
    """A ViT whose attention layers accept memory tokens as extra keys and values (``context``).

    Arguments as vit-pytorch's ``learnable_memory_vit.ViT``.  Used on its own it is a ViT (the
    encoder has no final norm; the pooled token is LayerNorm-ed before the head); wrap it in
    :class:`Adapter` to fine-tune new tasks.  ``pool="mean"`` averages every token (vit-pytorch
    accepts ``pool`` but always reads the class token).
    """

    attention_class = ContextAttention


def memory_mask(tokens: int, memories: int) -> Tensor:
    """``(1 + tokens, 1 + tokens + memories)``, ``True`` = may attend: the task's class token (row 0)
    sees everything; the backbone's tokens see only each other (not the task token, not the memories)."""
    mask = torch.zeros(1 + tokens, 1 + tokens + memories, dtype=torch.bool)
    mask[0] = True
    mask[1:, 1 : 1 + tokens] = True
    return mask


class Adapter(VisionModel):
    """A task on a frozen :class:`LearnableMemoryViT`: per-layer memory tokens, a class token and a head.

    Arguments as vit-pytorch's ``learnable_memory_vit.Adapter``.  Building it freezes the
    backbone (``requires_grad=False`` on all its parameters); only the adapter's own parameters
    train, and the backbone's outputs stay what they were.  Images must be ``image_size``.
    """

    def __init__(self, *, vit: LearnableMemoryViT, num_memories_per_layer: int = 10, num_classes: int = 2) -> None:
        super().__init__()
        if not isinstance(vit, LearnableMemoryViT):
            raise TypeError(
                "vit must be a vit_variants.LearnableMemoryViT (its attention layers take memory tokens as "
                f"extra keys and values), got {type(vit).__name__}"
            )
        memories = check_non_negative_int("num_memories_per_layer", num_memories_per_layer)
        dim, depth = vit.num_features, len(vit.transformer.layers)
        vit.requires_grad_(False)
        self.vit = vit
        self.num_features = dim
        self.memory_cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.memories = nn.Parameter(torch.randn(depth, memories, dim) * 0.02)
        backbone_tokens = vit.num_prefix_tokens + math.prod(vit.grid)
        self.register_buffer("attn_mask", memory_mask(backbone_tokens, memories)[None], persistent=False)
        self.norm = nn.LayerNorm(dim)
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)

    def forward_features(self, img: Tensor) -> Tensor:
        """``(batch, 1 + backbone tokens, dim)``: the task's class token, then the backbone's tokens."""
        tokens = self.vit.embed(img)
        if tokens.shape[1] + 1 != self.attn_mask.shape[-2]:
            raise ValueError(
                f"img must be image_size {self.vit.input_size} for an Adapter (its attention mask is built for "
                f"that many tokens), got shape {tuple(img.shape)}"
            )
        x = torch.cat((self.memory_cls_token.expand(len(tokens), -1, -1), self.vit.dropout(tokens)), dim=1)
        for layer, memories in zip(self.vit.transformer.layers, self.memories):
            x = layer(x, mask=self.attn_mask, context=memories.expand(len(x), -1, -1))
        return self.vit.transformer.norm(x)

    def pool_features(self, features: Tensor) -> Tensor:
        return self.norm(features[:, 0])
