"""The two factorized space-time encoders of ViViT (Arnab et al., arXiv 2103.15691), from core blocks.

Both take tokens laid out ``(batch, frames, tokens_per_frame, dim)``:

* :class:`FactorizedEncoder` (ViViT model 2): a spatial transformer within each frame, one vector
  per frame (its class token or mean), then a temporal transformer across frames;
* :class:`FactorizedSelfAttention` (ViViT model 3): each layer attends within a frame, then
  across frames at the same spatial position, then applies the MLP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.layers import Attention, FeedForward, Transformer, TransformerBlock


class FactorizedEncoder(nn.Module):
    """Spatial transformer per frame -> one token per frame -> temporal transformer.

    ``forward`` returns the temporal tokens ``(batch, [1 +] frames, dim)``, led by a temporal
    class token when ``pool="cls"`` (the spatial class token then summarises each frame).
    """

    def __init__(
        self,
        dim: int,
        spatial_depth: int,
        temporal_depth: int,
        heads: int,
        dim_head: int,
        mlp_dim: int,
        dropout: float,
        pool: str,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.spatial = Transformer(dim, spatial_depth, heads, dim_head, mlp_dim, dropout)
        self.temporal = Transformer(dim, temporal_depth, heads, dim_head, mlp_dim, dropout)
        self.temporal_cls = nn.Parameter(torch.randn(1, dim) * 0.02) if pool == "cls" else None

    def frame_tokens(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The spatial transformer's one token per frame (led by the temporal class token) and its mask."""
        b, f, n, d = x.shape
        x = self.spatial(x.reshape(b * f, n, d)).view(b, f, n, d)
        x = x[:, :, 0] if self.pool == "cls" else x.mean(dim=2)
        if self.temporal_cls is not None:
            x = torch.cat((self.temporal_cls.expand(b, 1, d), x), dim=1)
            if mask is not None:
                mask = torch.cat((mask.new_ones(b, 1), mask), dim=1)
        return x, mask

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(batch, frames, tokens, dim)``; ``mask``: ``(batch, frames)``, ``True`` = attend to it."""
        x, mask = self.frame_tokens(x, mask)
        return self.temporal(x, mask=mask)

    def forward_intermediates(
        self, x: Tensor, indices: int | Sequence[int] | None = None, *, mask: Tensor | None = None, **kwargs: Any
    ) -> tuple[Tensor, list[Tensor]]:
        """The temporal transformer's tokens after its blocks chosen by ``indices``."""
        x, mask = self.frame_tokens(x, mask)
        return self.temporal.forward_intermediates(x, indices, mask=mask, **kwargs)


class FactorizedBlock(nn.Module):
    """``x + spatial_attn(norm(x))`` within each frame, then a pre-norm block (temporal attention and
    MLP) across the frames at each spatial position."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.spatial_norm = nn.LayerNorm(dim)
        self.spatial_attn = Attention(dim, heads, dim_head, dropout)
        temporal_attn = Attention(dim, heads, dim_head, dropout)
        self.temporal = TransformerBlock(temporal_attn, FeedForward(dim, mlp_dim, dropout), dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(batch, frames, tokens, dim)``; ``mask``: ``(batch * tokens, frames)``."""
        b, f, n, d = x.shape
        x = x.reshape(b * f, n, d)
        x = x + self.spatial_attn(self.spatial_norm(x))
        x = x.view(b, f, n, d).transpose(1, 2).reshape(b * n, f, d)
        x = self.temporal(x, mask=mask)
        return x.view(b, n, f, d).transpose(1, 2)


class FactorizedSelfAttention(Transformer):
    """A core :class:`~vit_core.layers.Transformer` of :class:`FactorizedBlock` layers (plus its final
    norm) over ``(batch, frames, tokens, dim)`` tokens."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(dim, depth, block=lambda _: FactorizedBlock(dim, heads, dim_head, mlp_dim, dropout))

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (batch, frames, tokens, dim={self.dim}), got shape {tuple(x.shape)}")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """``x``: ``(batch, frames, tokens, dim)``; ``mask``: ``(batch, frames)``, ``True`` = attend to it."""
        self._check(x)
        return super().forward(x, _per_position(mask, x))

    def forward_intermediates(  # type: ignore[override]
        self, x: Tensor, indices: int | Sequence[int] | None = None, *, mask: Tensor | None = None, **kwargs: Any
    ) -> tuple[Tensor, list[Tensor]]:
        """As :meth:`Transformer.forward_intermediates`, over ``(batch, frames, tokens, dim)`` tokens."""
        self._check(x)
        return super().forward_intermediates(x, indices, mask=_per_position(mask, x), **kwargs)


def _per_position(mask: Tensor | None, x: Tensor) -> Tensor | None:
    """A ``(batch, frames)`` frame mask repeated for each spatial position's temporal attention."""
    return None if mask is None else mask.repeat_interleave(x.shape[2], dim=0)
