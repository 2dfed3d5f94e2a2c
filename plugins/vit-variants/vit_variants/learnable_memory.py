"""Learnable memory: "Fine-tuning Image Transformers using Learnable Memory" (Sandler et al., arXiv 2203.15243).

What the paper changes: a trained ViT is fine-tuned to a new task without touching its weights.
Each layer gets a few learned memory tokens that serve as extra keys and values, and the new task
gets its own class token and head.  An attention mask keeps the original tokens from seeing the
memories or the new class token, so the backbone's own outputs are unchanged and several task
:class:`Adapter` objects can share one frozen backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.layers import resolve_indices, tokens_to_map
from vit_core.models.base import VisionModel, block_feature_info, check_output_fmt, parameter_names
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


def memory_mask(tokens: int, memories: int, device: torch.device | None = None) -> Tensor:
    """``(1 + tokens, 1 + tokens + memories)``, ``True`` = may attend: the task's class token (row 0)
    sees everything; the backbone's tokens see only each other (not the task token, not the memories).
    Built on ``device`` (no host-to-device copy in a forward pass)."""
    mask = torch.zeros(1 + tokens, 1 + tokens + memories, dtype=torch.bool, device=device)
    mask[0] = True
    mask[1:, 1 : 1 + tokens] = True
    return mask


class Adapter(VisionModel):
    """A task on a frozen :class:`LearnableMemoryViT`: per-layer memory tokens, a class token and a head.

    Arguments as vit-pytorch's ``learnable_memory_vit.Adapter``.  Building it freezes the
    backbone (``requires_grad=False`` on all its parameters); only the adapter's own parameters
    train, and the backbone's outputs stay what they were.  The memory mask follows the
    backbone's token count, so the adapter runs at whatever size the backbone takes
    (:meth:`set_input_size` resizes the backbone and keeps it frozen).
    """

    def no_weight_decay(self) -> set[str]:
        """The task's class token and memory tokens (and the frozen backbone's own)."""
        return parameter_names(self, "memory_cls_token", "memories") | {f"vit.{n}" for n in self.vit.no_weight_decay()}

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
        self.norm = nn.LayerNorm(dim)
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)

    def set_input_size(self, image_size: int | Sequence[int], interpolation: str = "bicubic") -> None:
        """The backbone's :meth:`~vit_core.ViT.set_input_size`, its resampled positions kept frozen."""
        self.vit.set_input_size(image_size, interpolation)
        self.vit.requires_grad_(False)

    def forward_features(self, img: Tensor) -> Tensor:
        """``(batch, 1 + backbone tokens, dim)``: the task's class token, then the backbone's tokens."""
        return self.forward_intermediates(img, indices=[])[0]

    def pool_features(self, features: Tensor) -> Tensor:
        return self.norm(features[:, 0])

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        return block_feature_info(self.vit.transformer, self.num_features, max(self.vit.patch_size), "vit.transformer")

    def forward_intermediates(
        self,
        img: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """The tokens after the backbone layers chosen by ``indices`` (timm's meaning), with the
        task's memories, and ``forward_features(img)``.  ``"NLC"``: ``(batch, 1 + backbone tokens,
        dim)``; ``"NCHW"``: the patch tokens as ``(batch, dim, height, width)`` maps; ``norm``: the
        backbone's final norm on each."""
        check_output_fmt(output_fmt)
        layers = self.vit.transformer.layers
        chosen = resolve_indices(indices, len(layers))
        tokens = self.vit.embed(img)
        mask = memory_mask(tokens.shape[1], self.memories.shape[1], tokens.device)[None]
        x = torch.cat((self.memory_cls_token.expand(tokens.shape[0], -1, -1), self.vit.dropout(tokens)), dim=1)
        hidden = []
        for i, (layer, memories) in enumerate(zip(layers, self.memories)):
            if intermediates_only and len(hidden) == len(chosen):
                break
            x = layer(x, mask=mask, context=memories.expand(x.shape[0], -1, -1))
            if i in chosen:
                hidden.append(self.vit.transformer.norm(x) if norm else x)
        if output_fmt == "NCHW":
            skip, grid = 1 + self.vit.num_prefix_tokens, self.vit.token_grid(tuple(img.shape[-2:]))
            hidden = [tokens_to_map(h[:, skip:], grid) for h in hidden]
        return hidden if intermediates_only else (self.vit.transformer.norm(x), hidden)
