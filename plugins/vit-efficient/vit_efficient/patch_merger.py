"""PatchMerger: "Learning to Merge Tokens in Vision Transformers" (Renggli et al., arXiv 2202.12015).

What the paper changes: between two layers, ``M`` learned queries each take a softmax-weighted
average of the (LayerNorm-ed) tokens, turning ``N`` tokens into ``M``; every later layer works on
``M`` tokens.  Placed mid-way (the default), it roughly halves the cost of a ViT whose ``M`` is
small, for a small loss in accuracy.  The merger is attention with learned queries and the
normalised tokens as keys and values (one head of width ``dim``, no projections), so it is a
core :class:`~vit_core.layers.Attention` (fused kernel, Recorder support) with its own projection.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_core.layers import Attention
from vit_core.models import ViT
from vit_core.models.base import BlockOrder, parameter_names
from vit_core.validation import check_positive_int


class PatchMerger(Attention):
    """``(batch, tokens, dim) -> (batch, num_tokens_out, dim)``: ``softmax(W LN(x)^T / sqrt(dim)) LN(x)``.

    Args:
        dim: token width.
        num_tokens_out: ``M``, the number of merged tokens (one learned query each).
    """

    def __init__(self, dim: int, num_tokens_out: int) -> None:
        self.num_tokens_out = check_positive_int("num_tokens_out", num_tokens_out)
        super().__init__(dim, heads=1, dim_head=check_positive_int("dim", dim))

    def build_projections(self, dim: int, key_width: int, value_width: int, bias: bool) -> None:
        """No projections: the learned queries and the tokens' LayerNorm."""
        self.norm = nn.LayerNorm(dim)
        self.queries = nn.Parameter(torch.randn(self.num_tokens_out, dim))

    def project(
        self, x: Tensor, context: Tensor | None = None, *, grid: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries: the learned ones; keys and values: the normalised tokens (one head)."""
        if context is not None:
            raise ValueError("PatchMerger merges the tokens it is given; it takes no context")
        tokens = self.norm(x).unsqueeze(1)
        queries = self.queries.expand(x.shape[0], 1, -1, -1)
        return queries, tokens, tokens


class PatchMergerViT(ViT):
    """ViT with a :class:`PatchMerger` after layer ``patch_merge_layer`` (arguments as vit-pytorch's
    ``vit_with_patch_merger.ViT``): no class token, mean pooling over the merged tokens.

    Args:
        patch_merge_layer: merge after this many layers, in ``[1, depth]``; ``None``: ``depth // 2``
            (at least 1), mid-way as in the paper.
        patch_merge_num_tokens: the number of tokens after the merge (whatever the input size: the
            merger's learned queries attend over any number of tokens, so ``dynamic_img_size`` and
            ``set_input_size`` work as in ViT).
        others: as :class:`vit_core.ViT`.
    """

    def no_weight_decay(self) -> set[str]:
        """Also the merger's learned queries (tokens, not a projection)."""
        return super().no_weight_decay() | parameter_names(self, "transformer.inserted.*.queries")

    def block_order(self) -> BlockOrder | None:
        """ViT's, with the patch merger in the block it follows."""
        order = super().block_order()
        blocks = [list(block) for block in order.blocks]
        for index in self.transformer.inserted:
            blocks[int(index)].append(f"transformer.inserted.{index}")
        return BlockOrder(order.stem, tuple(tuple(block) for block in blocks))

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
        patch_merge_layer: int | None = None,
        patch_merge_num_tokens: int = 8,
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        dynamic_img_size: bool = False,
    ) -> None:
        check_positive_int("depth", depth)
        if patch_merge_layer is None:
            patch_merge_layer = max(depth // 2, 1)
        if isinstance(patch_merge_layer, bool) or not isinstance(patch_merge_layer, int):
            raise TypeError(f"patch_merge_layer must be an int or None, got {patch_merge_layer!r}")
        if not 1 <= patch_merge_layer <= depth:
            raise ValueError(
                f"patch_merge_layer must be in [1, depth={depth}] (merge after that many layers), "
                f"got {patch_merge_layer}"
            )
        merger = PatchMerger(dim, check_positive_int("patch_merge_num_tokens", patch_merge_num_tokens))
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            num_classes=num_classes,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            pool="mean",
            channels=channels,
            dim_head=dim_head,
            dropout=dropout,
            emb_dropout=emb_dropout,
            dynamic_img_size=dynamic_img_size,
        )
        self.patch_merge_layer = patch_merge_layer
        self.transformer.insert_after(patch_merge_layer - 1, merger)

    @property
    def patch_merger(self) -> PatchMerger:
        return self.transformer.inserted[str(self.patch_merge_layer - 1)]
