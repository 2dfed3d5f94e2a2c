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

from vit_core.layers import (
    Attention,
    FeedForward,
    LearnedPositionalEmbedding,
    PatchEmbedding,
    Transformer,
    TransformerBlock,
)
from vit_core.models.patch_model import PatchTransformer
from vit_core.models.vit import IMAGE_LAYOUT
from vit_core.validation import as_tuple, check_grid, check_positive_int, check_positive_ints


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


class ParallelViT(PatchTransformer):
    """ViT whose layers hold parallel branches.  Arguments as vit-pytorch's ``parallel_vit.ViT``.

    The patch embedding is a single linear map (no LayerNorms, as there); the encoder has no final
    norm and the pooled token is LayerNorm-ed before the head.  ``pool="mean"`` averages the class
    token with the patch tokens, as there.  :class:`~vit_core.Recorder` returns one map per branch:
    ``(batch, depth * num_parallel_branches, heads, tokens, tokens)``, layer by layer.
    """

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
    ) -> None:
        image_size, patch_size = as_tuple("image_size", image_size), as_tuple("patch_size", patch_size)
        check_positive_ints(dim=dim, heads=heads, mlp_dim=mlp_dim, dim_head=dim_head, channels=channels)
        branches = check_positive_int("num_parallel_branches", num_parallel_branches)
        grid = check_grid("image_size", image_size, "patch_size", patch_size)

        def block(_: int) -> nn.Module:
            attentions = [Attention(dim, heads, dim_head, dropout) for _ in range(branches)]
            mlps = [FeedForward(dim, mlp_dim, dropout) for _ in range(branches)]
            mixer, mlp = ParallelBranches(attentions, dim), ParallelBranches(mlps, dim)
            return TransformerBlock(mixer, mlp, dim, norm=lambda _: nn.Identity())

        super().__init__(
            input_size=image_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool=pool,
            positional=LearnedPositionalEmbedding(grid, dim),
            transformer=Transformer(dim, depth, final_norm=False, block=block),
            emb_dropout=emb_dropout,
            fc_norm=True,
            class_token=True,
            layout=IMAGE_LAYOUT,
            patch_embed=PatchEmbedding(channels, patch_size, dim, patch_norm=False, out_norm=False),
        )
