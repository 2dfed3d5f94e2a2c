"""Attention variants of the hierarchical models, each a small subclass of the core
:class:`~vit_core.layers.Attention` (its SDPA path, bias and Recorder hooks included).

* :class:`RelativePositionAttention`: a learned bias per head and relative offset within a
  window (Swin, arXiv 2103.14030), added on the fused kernel;
* :class:`MapProjectionAttention`: queries, keys and values computed by convolutions of the
  ``(h, w)`` token map (CvT's depth-wise projections, Twins' and ScalableViT's spatially reduced
  keys and values, LeViT's strided queries);
* :class:`DenseMapAttention`: attention that regroups the tokens of a dense ``(h, w)`` map itself
  (ScalableViT's interactive windows, SepViT's separable windows).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vit_core.layers import Attention
from vit_core.layers.spatial import RelativePositionBias, map_to_tokens, tokens_to_map


def split_heads(t: Tensor, heads: int) -> Tensor:
    """``(b, n, heads * d)`` -> ``(b, heads, n, d)``."""
    b, n, inner = t.shape
    return t.reshape(b, n, heads, inner // heads).transpose(1, 2)


class RelativePositionAttention(Attention):
    """Attention within ``window``-shaped groups plus a learned bias per head and relative offset."""

    def __init__(self, dim: int, heads: int, dim_head: int, window: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(dim, heads, dim_head, **kwargs)
        self.relative_bias = RelativePositionBias(heads, window)

    def score_bias(self, q: Tensor, k: Tensor) -> Tensor:
        return self.relative_bias()


class MapProjectionAttention(Attention):
    """Attention whose queries, keys and values come from :meth:`project_map`, a function of the
    ``(b, c, h, w)`` token map; the caller passes ``grid=(h, w)``.  Subclasses build their
    projection modules in ``__init__`` and implement :meth:`project_map`."""

    def build_projections(self, dim: int, key_width: int, value_width: int, bias: bool) -> None:
        """No fused qkv: subclasses build their convolutional projections in ``__init__``."""

    def project_map(self, fmap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(b, c, h, w)`` map -> queries, keys, values as maps ``(b, heads * d, h', w')``."""
        raise NotImplementedError

    def project(
        self, x: Tensor, context: Tensor | None = None, *, grid: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if context is not None:
            raise ValueError(f"{type(self).__name__} is self-attention; it takes no context")
        if grid is None:
            raise ValueError(f"{type(self).__name__} needs grid=(height, width) of its token map")
        q, k, v = self.project_map(tokens_to_map(x, grid))
        return tuple(split_heads(map_to_tokens(t), self.heads) for t in (q, k, v))


class DenseMapAttention(Attention):
    """Attention over the tokens ``(b, h * w, dim)`` of a dense ``grid=(h, w)`` map that groups them
    itself (windows), so it takes no mask or packing.  Subclasses implement :meth:`attend_map`."""

    def attend_map(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """``(b, h * w, dim)`` tokens of the ``grid`` map -> the attention's output, the same shape."""
        raise NotImplementedError

    def forward(
        self, x: Tensor, *, grid: tuple[int, int] | None = None, mask: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        """``x``: ``(b, h * w, dim)`` tokens of the ``grid=(h, w)`` map."""
        if grid is None:
            raise ValueError(f"{type(self).__name__} needs grid=(height, width) of its token map")
        if mask is not None or kwargs.get("packing") is not None:
            raise ValueError(
                f"{type(self).__name__} attends within windows of a dense map; it takes no mask or packing"
            )
        return self.attend_map(x, grid)
