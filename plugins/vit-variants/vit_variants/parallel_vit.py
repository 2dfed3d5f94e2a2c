"""Parallel ViT: "Three things everyone should know about Vision Transformers" (Touvron et al.,
arXiv 2203.09795), section "parallel vision transformers".

What the paper changes in ViT: each layer runs ``num_parallel_branches`` attention branches side by
side, then as many MLP branches, each branch with its own pre-norm, and adds their sum to the
residual stream: ``x = x + sum_i attn_i(norm_i(x))``, then ``x = x + sum_i mlp_i(norm'_i(x))``.
A shallower, wider network with the same parameter count, easier to parallelise.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vit_core.layers import Attention, FeedForward, PatchEmbedding, TransformerBlock
from vit_core.validation import check_positive_int
from vit_variants.class_token_vit import ClassTokenViT


class ParallelBranches(nn.Module):
    """``x -> sum_i branch_i(norm_i(x), **kwargs)``: branches side by side, each with its own LayerNorm.

    Keyword arguments (an attention's ``mask``, ``queries``, ...) are handed to every branch.
    """

    def __init__(self, branches: Sequence[nn.Module], dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in branches)
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor, **kwargs: object) -> Tensor:
        out = None
        for norm, branch in zip(self.norms, self.branches):
            y = branch(norm(x), **kwargs)
            out = y if out is None else out + y
        return out


class ParallelViT(ClassTokenViT):
    """ViT whose layers hold parallel branches.  Arguments as vit-pytorch's ``parallel_vit.ViT``.

    The patch embedding is a single linear map (no LayerNorms, as there); the encoder has no final
    norm and the pooled token is LayerNorm-ed before the head.  ``pool="mean"`` averages the class
    token with the patch tokens, as there.  :class:`~vit_core.Recorder` returns one map per branch:
    ``(batch, depth * num_parallel_branches, heads, tokens, tokens)``, layer by layer.
    """

    @property
    def attention_branches(self) -> int:
        """Recorded maps per layer (``vit attention`` rolls them out layer by layer, branches summed)."""
        return self.num_parallel_branches

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        pool: str = "cls",
        num_parallel_branches: int = 2,
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        dynamic_img_size: bool = False,
    ) -> None:
        self.num_parallel_branches = check_positive_int("num_parallel_branches", num_parallel_branches)
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            num_classes=num_classes,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            pool=pool,
            channels=channels,
            dim_head=dim_head,
            dropout=dropout,
            emb_dropout=emb_dropout,
            dynamic_img_size=dynamic_img_size,
        )

    def build_block(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float) -> nn.Module:
        """``num_parallel_branches`` attentions, then as many feed-forwards, each with its own norm."""
        branches = range(self.num_parallel_branches)
        attentions = ParallelBranches([Attention(dim, heads, dim_head, dropout) for _ in branches], dim)
        mlps = ParallelBranches([FeedForward(dim, mlp_dim, dropout) for _ in branches], dim)
        return TransformerBlock(attentions, mlps, dim, norm=lambda _: nn.Identity())

    @classmethod
    def build_patch_embed(cls, dim: int, patch_size: tuple[int, int], channels: int) -> nn.Module:
        """A single linear map of each flattened patch, as vit-pytorch's parallel ViT."""
        return PatchEmbedding(channels, patch_size, dim, patch_norm=False, out_norm=False)
