"""Patch embedding for images (2-D) and videos (3-D): cut, flatten, ``LayerNorm -> Linear -> LayerNorm``.

ViT (arXiv 2010.11929) embeds non-overlapping patches with a linear map; the extra LayerNorms
on the flattened patch and on the embedding follow "Better plain ViT baselines" (arXiv 2205.01580)
as vit-pytorch does.  One class serves any number of spatial axes and non-square patches.

In training, the embedding is recomputed during backward instead of keeping its three
intermediates (the flattened patches, the normalised patches and the projection): the recompute
costs one small matrix product per step, and it is what brings training memory of this
``LayerNorm -> Linear -> LayerNorm`` stem down to that of a single convolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vit_core.validation import as_tuple, check_positive_int


def patchify(x: Tensor, patch_size: Sequence[int]) -> Tensor:
    """``(batch, channels, *spatial)`` -> ``(batch, patches, prod(patch_size) * channels)``.

    Patches are ordered row-major over the patch grid; each patch vector is laid out as
    ``(p_0, p_1, ..., channels)`` (channels fastest).
    """
    b, c, *spatial = x.shape
    nd = len(patch_size)
    grid = [s // p for s, p in zip(spatial, patch_size)]
    shape = [b, c]
    for g, p in zip(grid, patch_size):
        shape += [g, p]
    x = x.reshape(shape)
    grid_axes = [2 + 2 * i for i in range(nd)]
    patch_axes = [3 + 2 * i for i in range(nd)]
    x = x.permute(0, *grid_axes, *patch_axes, 1)
    return x.reshape(b, math.prod(grid), math.prod(patch_size) * c)


class PatchEmbedding(nn.Module):
    """Embed non-overlapping patches of a ``(batch, channels, *spatial)`` tensor as ``(batch, patches, dim)``.

    Args:
        channels: input channels.
        patch_size: one int per spatial axis (``(ph, pw)`` for images, ``(pf, ph, pw)`` for video).
        dim: embedding width.
        norm_bias: bias in the two LayerNorms.
        patch_norm, out_norm: keep the LayerNorm on the flattened patch / on the embedding (without
            both, this is ViT's plain linear patch embedding, timm's convolution as a matrix product).
        bias: bias of the linear projection (CLIP's has none).
        recompute: when gradients are being recorded, keep only the input for backward and
            recompute the embedding there (same values and gradients, less memory).
    """

    def __init__(
        self,
        channels: int,
        patch_size: Sequence[int],
        dim: int,
        *,
        norm_bias: bool = True,
        patch_norm: bool = True,
        out_norm: bool = True,
        bias: bool = True,
        recompute: bool = True,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.patch_size = as_tuple("patch_size", tuple(patch_size), len(patch_size))
        self.dim = check_positive_int("dim", dim)
        self.patch_dim = patch_dim = channels * math.prod(self.patch_size)
        self.patch_norm = nn.LayerNorm(patch_dim, bias=norm_bias) if patch_norm else nn.Identity()
        self.proj = nn.Linear(patch_dim, dim, bias=bias)
        self.norm = nn.LayerNorm(dim, bias=norm_bias) if out_norm else nn.Identity()
        self.recompute = recompute

    def embed_patches(self, patches: Tensor) -> Tensor:
        """Embed already flattened patches ``(..., patch_dim)``."""
        return self._maybe_recompute(self._project, patches)

    def forward(self, x: Tensor) -> Tensor:
        return self._maybe_recompute(self._patchify_and_project, x)

    def forward_map(self, x: Tensor) -> Tensor:
        """The embedding as a channels-last map ``(batch, *grid, dim)`` instead of a token sequence."""
        grid = [s // p for s, p in zip(x.shape[2:], self.patch_size)]
        return self._maybe_recompute(self._patchify_and_project, x).view(x.shape[0], *grid, self.dim)

    def _project(self, patches: Tensor) -> Tensor:
        return self.norm(self.proj(self.patch_norm(patches)))

    def _patchify_and_project(self, x: Tensor) -> Tensor:
        return self._project(patchify(x, self.patch_size))

    def _maybe_recompute(self, embed: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(embed, x, use_reentrant=False, preserve_rng_state=False)
        return embed(x)


class ChannelsLastPatchEmbedding(PatchEmbedding):
    """:class:`PatchEmbedding` between channels-last maps: ``(batch, *spatial, channels)`` ->
    ``(batch, *grid, dim)``, for the stages of hierarchical models that keep their maps channels-last."""

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_map(x.movedim(-1, 1))
