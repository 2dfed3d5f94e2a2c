"""ViT for small datasets: "Vision Transformer for Small-Size Datasets" (Lee et al., arXiv 2112.13492).

What the paper changes in ViT, to give it the locality inductive bias small datasets lack:

* shifted patch tokenization (SPT): the image is concatenated on the channel axis with copies of
  itself shifted in four directions, then cut into patches, so each patch token also sees its
  neighbours' border pixels (as vit-pytorch does: shifts of one pixel left, right, up and down);
* locality self-attention (LSA): a learned softmax temperature instead of the fixed
  ``1 / sqrt(dim_head)``, and no token attends to itself (the diagonal is masked), which sharpens
  the attention towards the other tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.layers import Attention, PatchEmbedding, patchify
from vit_core.models.patch_model import IMAGE_LAYOUT
from vit_core.validation import as_tuple, check_positive_ints, check_tensor
from vit_variants.class_token_vit import ClassTokenViT

SHIFTS = ((1, -1, 0, 0), (-1, 1, 0, 0), (0, 0, 1, -1), (0, 0, -1, 1))
"""``F.pad`` arguments shifting an image one pixel right, left, down and up (zeros fill the gap)."""


def shift_and_stack(x: Tensor) -> Tensor:
    """``(batch, c, h, w) -> (batch, 5 c, h, w)``: the image, then its four one-pixel shifts."""
    return torch.cat([x, *(F.pad(x, shift) for shift in SHIFTS)], dim=1)


class SPT(nn.Module):
    """Shifted patch tokenization: ``(batch, channels, height, width) -> (batch, patches, dim)``.

    The stacked image and shifts are cut into patches, LayerNorm-ed and projected (no norm after
    the projection).  Arguments as vit-pytorch's ``vit_for_small_dataset.SPT``.
    """

    def __init__(self, *, dim: int, patch_size: int | tuple[int, int], channels: int = 3) -> None:
        super().__init__()
        check_positive_ints(dim=dim, channels=channels)
        self.channels = channels
        self.patch_size = as_tuple("patch_size", patch_size)
        self.embedding = PatchEmbedding(5 * channels, self.patch_size, dim, out_norm=False)
        self.patch_dim = self.embedding.patch_dim

    def patches(self, x: Tensor) -> Tensor:
        """The flattened patches ``(batch, patches, patch_dim)`` of the stacked image and shifts."""
        return patchify(shift_and_stack(x), self.patch_size)

    def embed_patches(self, patches: Tensor) -> Tensor:
        return self.embedding.embed_patches(patches)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("img", x, layout=IMAGE_LAYOUT, channels=self.channels, patch=self.patch_size)
        return self.embedding(shift_and_stack(x))


class LocalitySelfAttention(Attention):
    """LSA: queries scaled by a learned temperature (initialised to ``1 / sqrt(dim_head)``, learned
    in log space so it stays positive) and the diagonal masked out: a token never attends to itself."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, dim_head, dropout)
        self.log_scale = nn.Parameter(torch.tensor(math.log(dim_head**-0.5)))

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        scale: float | None = None,
    ) -> Tensor:
        others = ~torch.eye(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device)
        mask = others if mask is None else mask & others
        return super().attend(q * self.log_scale.exp(), k, v, mask=mask, bias=bias, scale=1.0)


class SmallDatasetViT(ClassTokenViT):
    """ViT with shifted patch tokenization and locality self-attention.  Arguments as
    vit-pytorch's ``vit_for_small_dataset.ViT``.

    The encoder has no final norm; the pooled token is LayerNorm-ed before the head.
    """

    attention_class = LocalitySelfAttention

    @classmethod
    def build_patch_embed(cls, dim: int, patch_size: tuple[int, int], channels: int) -> nn.Module:
        return SPT(dim=dim, patch_size=patch_size, channels=channels)

    def patches(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x``; the shifted-and-stacked patches ``(batch, patches, patch_dim)`` and the grid."""
        grid = self.patch_grid(x)
        return self.patch_embed.patches(x), grid
