"""Attention whose keys and values also cover extra ``context`` tokens, shared by several variants.

The queries of ``x`` attend over ``cat(x, context)``: CaiT's and XCiT's class attention (the class
token over itself and the patch tokens, arXiv 2103.17239 / 2106.09681), CrossViT's cross attention
(one branch's class token over itself and the other branch's patch tokens, arXiv 2103.14899) and
learnable memory (the tokens over themselves and a layer's memory tokens, arXiv 2203.15243).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vit_core.layers import Attention


class ContextAttention(Attention):
    """:class:`~vit_core.layers.Attention` whose keys and values are those of ``x`` followed by ``context``'s.

    One fused qkv projection serves both: ``x`` gets queries, keys and values, ``context`` only keys
    and values, through the same key and value weights.  Without ``context`` it is self-attention.
    ``context`` is taken as given (not normalised by the block), as the models using it expect.
    """

    def project(
        self, x: Tensor, context: Tensor | None = None, *, grid: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = super().project(x)
        if context is None:
            return q, k, v
        if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != self.dim:
            raise ValueError(
                f"context must be (batch={x.shape[0]}, tokens, dim={self.dim}), got shape {tuple(context.shape)}"
            )
        inner = self.heads * self.dim_head
        bias = None if self.to_qkv.bias is None else self.to_qkv.bias[inner:]
        b, m, _ = context.shape
        kv = F.linear(context, self.to_qkv.weight[inner:], bias).view(b, m, 2, self.heads, self.dim_head)
        k_context, v_context = kv.permute(2, 0, 3, 1, 4)
        return q, torch.cat((k, k_context), dim=2), torch.cat((v, v_context), dim=2)
