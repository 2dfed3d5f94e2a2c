"""ATSViT: "Adaptive Token Sampler for Efficient Vision Transformers" (Fayyaz et al., arXiv 2111.15667).

What the paper changes: a parameter-free sampler after a layer's attention keeps only the patch
tokens that matter for this image.  Each patch token is scored by the class token's attention to
it, each head's weight multiplied by the norm of that head's value vector and summed over heads;
the scores are normalised to sum to one and sampled ``K`` times through their inverse cumulative
distribution.  Duplicate draws collapse into one token, so a layer keeps *at most* ``K`` tokens,
and fewer for an image whose class attention is concentrated.

Sampling, in training and in evaluation:

* evaluation (and training with ``sampling="fixed"``): the paper's fixed sampling, the inverse
  CDF at the ``K`` evenly spaced points ``(k + 1/2) / K``: deterministic, the same tokens for the
  same image, whatever the batch;
* training with ``sampling="random"`` (the default): ``K`` independent draws from the scores
  (Gumbel-max over their logarithms, the distribution vit-pytorch samples from in both modes), so
  every step sees a different subset.

How it is built from core blocks: block ``i``'s attention is :class:`TokenSamplingAttention`, a
core :class:`~vit_core.layers.Attention` that also computes the class-token row of its weights
(one explicit row; the block itself stays on the fused kernel) and draws the tokens to keep; the
trunk's ``insert_after(i, ...)`` seam then gathers them (:class:`KeepSampledTokens`).  Attention
outputs and the MLP are computed row by row, so computing block ``i`` in full and keeping the
sampled rows gives exactly the rows the paper computes; only block ``i``'s work on the dropped
tokens is spent in vain.  Kept counts differ per image: every layer pads its tokens at the end to
its budget ``K`` (a width known from shapes, so no count is read back from the device and the model
exports with static shapes) and hands the trunk a key mask that hides the padding from the later
layers' attention and sampling; the class token is the only one pooled, so padding is neutral.  As
in vit-pytorch, a layer whose batch holds no more than ``K`` tokens keeps them all.  All of it is
batched tensor code: no per-image loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.layers import Attention, FeedForward, Transformer, TransformerBlock
from vit_core.models import ViT
from vit_core.validation import check_choice, check_positive_int, check_positive_ints

SAMPLING = ("random", "fixed")
EPS = 1e-6


@dataclass(eq=False)
class SampledTokens:
    """What a :class:`TokenSamplingAttention` hands to the :class:`KeepSampledTokens` after its block.

    Written by every forward pass: ``shape`` ``(batch, tokens)`` the layer saw (class token
    included); ``key_mask`` its key mask ``(batch, tokens)`` (``None``: no padding);
    ``positions`` ``(batch, kept)`` the kept patch tokens' positions among the layer's patch
    tokens, ascending (``None``: the layer did not sample); ``valid`` ``(batch, kept)``, ``False``
    on padding.
    """

    shape: tuple[int, int] | None = None
    key_mask: Tensor | None = None
    positions: Tensor | None = None
    valid: Tensor | None = None


def significance(
    q_cls: Tensor, k: Tensor, v: Tensor, *, scale: float, mask: Tensor | None = None, bias: Tensor | None = None
) -> Tensor:
    """The ATS score of every patch token, ``(batch, tokens - 1)``, each row summing to one.

    ``q_cls``: the class token's queries ``(batch, heads, 1, d)``; ``k``, ``v``: ``(batch, heads,
    tokens, d)`` with the class token first; ``mask`` / ``bias`` as :meth:`Attention.attend` takes
    them.  Score of token ``j``: ``sum_h A_h[cls, j] * |v_h[j]|``, normalised over the patch tokens.
    """
    scores = (q_cls.float() @ k.float().transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias[..., :1, :].float()
    if mask is not None:
        scores = scores.masked_fill(~mask[..., :1, :], float("-inf"))
    class_attention = scores.softmax(dim=-1)[:, :, 0, 1:]
    weighted = (class_attention * v[:, :, 1:].float().norm(dim=-1)).sum(dim=1)
    return weighted / (weighted.sum(dim=-1, keepdim=True) + EPS)


def draw(scores: Tensor, valid: Tensor, count: int, *, random: bool) -> Tensor:
    """``count`` token positions per row of ``scores`` ``(batch, tokens)``, ``(batch, count)``.

    ``random``: independent draws (Gumbel-max); otherwise the inverse CDF at evenly spaced points.
    Positions where ``valid`` is false (padding) are never drawn.
    """
    if random:
        logits = torch.log(scores + EPS).masked_fill(~valid, torch.finfo(scores.dtype).min / 2)
        uniform = torch.rand(scores.shape[0], count, scores.shape[1], device=scores.device, dtype=scores.dtype)
        gumbel = -torch.log(-torch.log(uniform + EPS) + EPS)
        return (logits.unsqueeze(1) + gumbel).argmax(dim=-1)
    cdf = scores.masked_fill(~valid, 0.0).cumsum(dim=-1)
    points = (torch.arange(count, device=scores.device, dtype=cdf.dtype) + 0.5) / count * cdf[:, -1:]
    # searchsorted (left) as a count of the cumulative scores below each point: the same index, and
    # an op ONNX has (it has no searchsorted)
    return (cdf.unsqueeze(1) < points.unsqueeze(-1)).sum(dim=-1).clamp_(max=scores.shape[1] - 1)


def drawn_positions(drawn: Tensor, tokens: int) -> Tensor:
    """Which of ``tokens`` positions each row of ``drawn`` ``(batch, draws)`` drew at least once: ``(batch, tokens)``
    booleans."""
    return torch.zeros(drawn.shape[0], tokens, dtype=torch.bool, device=drawn.device).scatter_(1, drawn, True)


def keep_positions(chosen: Tensor, kept: int) -> tuple[Tensor, Tensor]:
    """The chosen positions of each row of ``chosen`` ``(batch, tokens)``, ascending, padded at the end to ``kept``.

    Returns ``positions`` ``(batch, kept)`` and ``valid`` (``False`` on padding); ``kept`` (a count
    known from shapes: the layer's budget) must be at least every row's chosen count.  Padding slots
    hold positions that were not chosen, so each row is a set of distinct positions.  A stable
    partition of ``0..tokens-1`` (chosen first) built with one cumulative sum and one scatter: no
    loop over the batch, no sort, and no count read back to the host.
    """
    batch, tokens = chosen.shape
    counts = chosen.sum(dim=1, keepdim=True)
    rank = chosen.cumsum(dim=1)
    order = torch.arange(tokens, device=chosen.device).expand(batch, tokens)
    slot = torch.where(chosen, rank - 1, counts + order - rank)
    positions = torch.empty_like(order).scatter_(1, slot, order)[:, :kept]
    valid = torch.arange(kept, device=chosen.device) < counts
    return positions, valid


class TokenSamplingAttention(Attention):
    """Self-attention that samples at most ``max_tokens`` of its patch tokens to keep (ATS, arXiv 2111.15667).

    The output is that of :class:`~vit_core.layers.Attention` for every token; the sampled
    positions go to ``handoff`` for the :class:`KeepSampledTokens` that follows the block.  Layers
    that see no more than ``max_tokens`` patch tokens do not sample.  The first token must be the
    class token; ``mask`` must be a key mask (padding), as the trunk passes it.

    Args:
        dim, heads, dim_head, dropout: as :class:`~vit_core.layers.Attention`.
        max_tokens: the most patch tokens this layer keeps.
        sampling: ``"random"`` draws at random while training; ``"fixed"`` always uses fixed sampling
            (evaluation always does).
        handoff: where the sampled positions are written.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        *,
        max_tokens: int,
        sampling: str = "random",
        handoff: SampledTokens,
    ) -> None:
        super().__init__(dim, heads, dim_head, dropout)
        self.max_tokens = check_positive_int("max_tokens", max_tokens)
        self.sampling = check_choice("sampling", sampling, SAMPLING)
        if not isinstance(handoff, SampledTokens):
            raise TypeError(f"handoff must be a SampledTokens, got {type(handoff).__name__}")
        self.handoff = handoff

    def attend(self, q: Tensor, k: Tensor, v: Tensor, **options: Any) -> Tensor:
        """:meth:`~vit_core.layers.Attention.attend` (``mask``, ``bias``, ``scale``), after :meth:`sample`."""
        self.sample(q, k, v, mask=options.get("mask"), bias=options.get("bias"), scale=options.get("scale"))
        return super().attend(q, k, v, **options)

    def sample(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, bias: Tensor | None, scale: float | None
    ) -> None:
        """Score the patch tokens, draw the ones to keep and write them to :attr:`handoff`."""
        batch, tokens = k.shape[0], k.shape[2]
        key_mask = None if mask is None else mask.expand(batch, -1, -1, -1)[:, 0, 0, :]
        handoff = self.handoff
        handoff.shape, handoff.key_mask, handoff.positions, handoff.valid = (batch, tokens), key_mask, None, None
        if tokens - 1 <= self.max_tokens:
            return
        if scale is None:
            scale = self.scale if self.scale is not None else q.shape[-1] ** -0.5
        scores = significance(q[:, :, :1], k, v, scale=scale, mask=mask, bias=bias)
        valid = torch.ones_like(scores, dtype=torch.bool) if key_mask is None else key_mask[:, 1:]
        random = self.training and self.sampling == "random"
        chosen = drawn_positions(draw(scores, valid, self.max_tokens, random=random), tokens - 1)
        # The layer's width comes from shapes; whether the batch holds more tokens than the budget is a
        # device bool.  When it does not, every token is kept (as a layer that does not sample).
        over_budget = (valid.sum(dim=1) > self.max_tokens).any()
        chosen = (chosen & over_budget) | (valid & ~over_budget)  # a boolean where (onnxruntime has none)
        handoff.positions, handoff.valid = keep_positions(chosen, self.max_tokens)


class KeepSampledTokens(nn.Module):
    """Keep the class token and the patch tokens its block's :class:`TokenSamplingAttention` sampled.

    ``forward(x)`` -> ``(tokens, key_mask)`` for the trunk's later blocks (``x`` unchanged, with
    the block's own key mask, when the layer did not sample).
    """

    def __init__(self, handoff: SampledTokens) -> None:
        super().__init__()
        if not isinstance(handoff, SampledTokens):
            raise TypeError(f"handoff must be a SampledTokens, got {type(handoff).__name__}")
        self.handoff = handoff

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        handoff = self.handoff
        if handoff.positions is None:
            return x if handoff.key_mask is None else (x, handoff.key_mask)
        batch = x.shape[0]
        index = torch.cat((handoff.positions.new_zeros(batch, 1), handoff.positions + 1), dim=1)
        kept = x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        key_mask = torch.cat((handoff.valid.new_ones(batch, 1), handoff.valid), dim=1)
        return kept, key_mask


def check_token_budgets(max_tokens_per_depth: Sequence[int], depth: int) -> tuple[int, ...]:
    """``max_tokens_per_depth``: one positive int per layer, non-increasing."""
    if not isinstance(max_tokens_per_depth, (tuple, list)):
        raise TypeError(f"max_tokens_per_depth must be a tuple of ints, one per layer, got {max_tokens_per_depth!r}")
    budgets = tuple(max_tokens_per_depth)
    if len(budgets) != depth:
        raise ValueError(
            f"max_tokens_per_depth must hold one budget per layer (depth={depth}), got {len(budgets)}: {budgets}"
        )
    for budget in budgets:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
            raise ValueError(f"max_tokens_per_depth must hold positive ints, got {budgets}")
    if any(later > earlier for earlier, later in itertools.pairwise(budgets)):
        raise ValueError(
            f"max_tokens_per_depth must be non-increasing (a layer keeps at most what it got), got {budgets}"
        )
    return budgets


class ATSViT(ViT):
    """ViT whose layers keep at most ``max_tokens_per_depth[i]`` patch tokens (arguments as vit-pytorch's
    ``ats_vit.ViT``).

    ``forward(img, return_sampled_token_ids=True)`` also returns :meth:`sampled_token_ids`.  See the
    module docstring for how sampling behaves in training and evaluation.

    Args:
        max_tokens_per_depth: one budget per layer, non-increasing.
        sampling: ``"random"`` (default: random draws while training) or ``"fixed"``.
        others: as :class:`vit_core.ViT` (class-token pooling; the class token is never dropped;
            ``dynamic_img_size`` and ``set_input_size`` as there: the budgets cap any number of tokens).
    """

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        num_classes: int,
        dim: int,
        depth: int,
        max_tokens_per_depth: Sequence[int],
        heads: int,
        mlp_dim: int,
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        sampling: str = "random",
        dynamic_img_size: bool = False,
    ) -> None:
        check_positive_ints(dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim, dim_head=dim_head)
        budgets = check_token_budgets(max_tokens_per_depth, depth)
        check_choice("sampling", sampling, SAMPLING)
        handoffs = [SampledTokens() for _ in budgets]

        def block(i: int) -> TransformerBlock:
            attn = TokenSamplingAttention(
                dim, heads, dim_head, dropout, max_tokens=budgets[i], sampling=sampling, handoff=handoffs[i]
            )
            return TransformerBlock(attn, FeedForward(dim, mlp_dim, dropout), dim)

        trunk = Transformer(dim, depth, final_norm=False, block=block)
        for i, handoff in enumerate(handoffs):
            trunk.insert_after(i, KeepSampledTokens(handoff))
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            num_classes=num_classes,
            dim=dim,
            channels=channels,
            emb_dropout=emb_dropout,
            transformer=trunk,
            dynamic_img_size=dynamic_img_size,
        )
        self.max_tokens_per_depth = budgets
        self.sampling = sampling
        self.handoffs = handoffs

    def sampled_token_ids(self) -> Tensor:
        """The patch tokens the last forward pass kept after its last layer, ``(batch, kept)``.

        Indices into the row-major patch grid of the input, ascending; ``-1`` pads rows that kept
        fewer tokens than the last sampling layer's budget.  Every row holds distinct indices, at most
        ``max_tokens_per_depth[-1]`` of them once the last layer has sampled.
        """
        first = self.handoffs[0]
        if first.shape is None:
            raise RuntimeError("sampled_token_ids() reads the last forward pass; run the model first")
        batch, tokens = first.shape
        device = self.cls_token.device
        ids = torch.arange(tokens - 1, device=device).expand(batch, -1)
        for handoff in self.handoffs:
            if handoff.positions is not None:
                ids = torch.where(handoff.valid, ids.gather(1, handoff.positions), -1)
        return ids

    def forward(self, img: Tensor, return_sampled_token_ids: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``img`` -> logits ``(batch, num_classes)``; with ``return_sampled_token_ids`` also the ids
        of the patches kept after the last layer (``-1`` = padding)."""
        if not isinstance(return_sampled_token_ids, bool):
            raise TypeError(f"return_sampled_token_ids must be a bool, got {return_sampled_token_ids!r}")
        logits = self.forward_head(self.forward_features(img))
        if return_sampled_token_ids:
            return logits, self.sampled_token_ids()
        return logits
