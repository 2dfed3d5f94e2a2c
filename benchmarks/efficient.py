"""vit-efficient's comparisons (issue 14), measured like every other (see :mod:`benchmarks.cases`).

Two sections:

* ``efficient-trunks``: at 1,024, 4,096 and 16,384 tokens (the README's 2048x2048 image with
  32x32 patches is 4,096), a forward pass and a training step of three trunks of the same width
  and depth on ``(1, tokens, dim)`` tokens: ``dense``, the core :class:`~vit_core.layers.Transformer`
  (fused SDPA: linear memory, quadratic time); ``nystrom``, the ``nystrom`` backend (256
  landmarks: linear time and memory); ``x-transformers``, the ``x-transformers`` backend
  (``attn_flash=True``: SDPA inside its own layers).  Peak training memory of each in a fresh
  process; the targets read Nystrom's memory exponent in tokens.
* ``token-reduction``: a ViT-S/16-sized model against the same ViT without the reduction:
  PatchMergerViT merging the 196 patch tokens into 98 after layer 6 of 12 (against a ViT with the
  same mean pooling), and ATSViT keeping at most 196, 98, 49 and 24 patch tokens over thirds of
  the depth (against a class-token ViT, whose last block runs for the class token only).
  ATSViT samples with ``sampling="fixed"`` so that both modes keep the same tokens; its claimed
  work is computed from the token counts its sampler reports for the benchmark's batch (the only
  data-dependent part), and checked like every claim.

The rows need vit-efficient (and its backend packages); without them the section is empty.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.cases import CPU_FP32, Comparison, Row, Setup, _run_fresh, _where, available, float_sum
from benchmarks.work import Claim, Encoder, vit_claim
from vit_core import ViT
from vit_core.layers import Transformer

TRUNKS_SECTION = "efficient-trunks"
REDUCTION_SECTION = "token-reduction"
SECTIONS = (TRUNKS_SECTION, REDUCTION_SECTION)
DENSE, NYSTROM, X_TRANSFORMERS = "dense", "nystrom", "x-transformers"


@dataclass(frozen=True)
class TrunkCase:
    """Three trunks of width ``dim``, ``depth`` blocks of ``heads`` x ``dim_head`` heads, MLP ``4 * dim``."""

    dim: int
    depth: int
    heads: int
    landmarks: int

    @property
    def dim_head(self) -> int:
        return self.dim // self.heads

    @property
    def encoder(self) -> Encoder:
        return Encoder(self.dim, self.depth, self.heads, self.dim_head, 4 * self.dim, 0, 0)

    def trunk_kwargs(self) -> dict:
        return dict(dim=self.dim, depth=self.depth, heads=self.heads, dim_head=self.dim_head)


FULL_TRUNKS = TrunkCase(dim=256, depth=4, heads=4, landmarks=256)
QUICK_TRUNKS = TrunkCase(dim=32, depth=1, heads=2, landmarks=16)
FULL_TOKENS = (1024, 4096, 16384)
QUICK_TOKENS = (64, 128)


def trunk_implementations() -> list[str]:
    impls = [DENSE]
    if available("vit_efficient"):
        impls += [name for name, module in ((NYSTROM, "nystrom_attention"), (X_TRANSFORMERS, "x_transformers"))
                  if available(module)]  # fmt: skip
    return impls


def build_trunk(impl: str, case: TrunkCase) -> nn.Module:
    if impl == DENSE:
        return Transformer(case.dim, case.depth, case.heads, case.dim_head, 4 * case.dim)
    from vit_efficient.backends import nystromformer, x_transformers_encoder

    if impl == NYSTROM:
        return nystromformer(**case.trunk_kwargs(), num_landmarks=case.landmarks)
    return x_transformers_encoder(**case.trunk_kwargs(), attn_flash=True)


def dense_trunk_claim(encoder: Encoder, tokens: int) -> Claim:
    """A pre-norm trunk on one sequence: projections and MLP per token, scores per token pair."""
    linear = encoder.depth * (encoder.projections(tokens, tokens) + encoder.mlp_flops(tokens))
    return Claim(tokens, linear, encoder.depth * encoder.scores(tokens * tokens))


def nystrom_trunk_claim(case: TrunkCase, tokens: int, conv_kernel: int = 33, iterations: int = 6) -> Claim:
    """nystrom_attention.Nystromformer on one sequence (arXiv 2102.03902, its package's layout).

    Per layer: the sequence is zero-padded at the front to ``padded``, a multiple of the ``m``
    landmarks; qkv, output projection and the values' depth-wise convolution run on ``padded``
    tokens, the MLP on the real ones.  Batched products per head: queries x key landmarks, query
    landmarks x key landmarks, query landmarks x keys, four ``m x m`` products per pseudo-inverse
    iteration, then ``(A1 A2+) (A3 V)``: ``n m m``, ``m n d`` and ``n m d``.
    """
    m, h, d, e = case.landmarks, case.heads, case.dim_head, case.encoder
    padded = math.ceil(tokens / m) * m
    linear = e.projections(padded, padded) + e.mlp_flops(tokens) + 2 * padded * d * h * conv_kernel
    attention = 2 * h * (4 * padded * m * d + m * m * d + padded * m * m + 4 * iterations * m**3)
    return Claim(tokens, case.depth * linear, case.depth * attention)


def trunk_comparison(tokens: int, case: TrunkCase, setup: Setup = CPU_FP32, *, memory: bool = True) -> Comparison:
    """The three trunks on one seeded ``(1, tokens, dim)`` sequence."""
    torch.manual_seed(0)
    x = torch.randn(1, tokens, case.dim, device=setup.device)
    claims = {
        DENSE: dense_trunk_claim(case.encoder, tokens),
        NYSTROM: nystrom_trunk_claim(case, tokens),
        X_TRANSFORMERS: dense_trunk_claim(case.encoder, tokens),
    }
    about = {
        DENSE: "vit_core Transformer (fused SDPA)",
        NYSTROM: f"nystrom-attention Nystromformer, {case.landmarks} landmarks (the `nystrom` backend)",
        X_TRANSFORMERS: "x-transformers Encoder, attn_flash=True (the `x-transformers` backend)",
    }
    impls = trunk_implementations()
    rows = [
        Row(
            impl,
            build_trunk(impl, case).to(setup.device),
            x,
            claims[impl],
            about[impl],
            loss=float_sum,
            memory=functools.partial(_trunk_peak, impl, case, tokens, setup) if memory else None,
        )
        for impl in impls
    ]
    return Comparison(
        section=TRUNKS_SECTION,
        name=f"trunks, {tokens} tokens",
        rows=rows,
        pairs=[(impl, DENSE) for impl in impls if impl != DENSE],
        params={"case": f"{tokens} tokens", "batch": 1, "tokens": tokens, "dim": case.dim, "depth": case.depth},
        baseline=DENSE,
        items=1,
        useful=DENSE,
    )


TRUNK_MEMORY_SCRIPT = """
import json, sys, torch
sys.path[:0] = {paths!r}
from benchmarks.cases import Setup, float_sum, train_step
from benchmarks.efficient import TrunkCase, build_trunk
from benchmarks.memory import peak_increase
setup = Setup({device!r}, getattr(torch, {dtype!r}))
model = build_trunk({impl!r}, TrunkCase(**{case!r})).to(setup.device)
x = torch.randn(1, {tokens}, {dim}, device=setup.device)
step = train_step(model, x, float_sum, setup)
print(json.dumps(peak_increase(lambda: (step(), step()), setup.device)))
"""


def _trunk_peak(impl: str, case: TrunkCase, tokens: int, setup: Setup) -> int:
    fields = dict(dim=case.dim, depth=case.depth, heads=case.heads, landmarks=case.landmarks)
    script = TRUNK_MEMORY_SCRIPT.format(
        paths=sys.path, impl=impl, case=fields, tokens=tokens, dim=case.dim, **_where(setup)
    )
    return _run_fresh(script)


# ---------------------------------------------------------------------------------------------
# Token reduction


@dataclass(frozen=True)
class ReductionCase:
    """A ViT of ``depth`` blocks on ``image``-sided images cut into ``patch``-sided patches."""

    name: str
    image: int
    patch: int
    dim: int
    depth: int
    heads: int
    batch: int

    @property
    def patches(self) -> int:
        return (self.image // self.patch) ** 2

    @property
    def kwargs(self) -> dict:
        return dict(
            image_size=self.image, patch_size=self.patch, num_classes=1000, dim=self.dim, depth=self.depth,
            heads=self.heads, mlp_dim=4 * self.dim, dim_head=self.dim // self.heads,
        )  # fmt: skip

    @property
    def encoder(self) -> Encoder:
        return Encoder(self.dim, self.depth, self.heads, self.dim // self.heads, 4 * self.dim, 3 * self.patch**2, 1000)

    @property
    def merge_layer(self) -> int:
        return self.depth // 2

    @property
    def budgets(self) -> tuple[int, ...]:
        """All patches over the first third of the depth, then a half, a quarter, an eighth."""
        shares = [1, 2, 4, 8]
        per = math.ceil(self.depth / len(shares))
        return tuple(max(self.patches // shares[min(i // per, 3)], 1) for i in range(self.depth))


FULL_REDUCTION = ReductionCase("ViT-S/16", 224, 16, 384, 12, 6, 8)
QUICK_REDUCTION = ReductionCase("tiny", 32, 4, 32, 2, 2, 2)


def patch_merger_claim(case: ReductionCase) -> Claim:
    """Blocks before the merge on every patch token, the merger's ``M x N`` attention (one head of
    width ``dim``, no projections), the later blocks on ``M = patches // 2`` tokens, mean pooling."""
    e, b, n, k = case.encoder, case.batch, case.patches, case.merge_layer
    merged = n // 2
    linear = e.embed(b * n) + e.head(b)
    linear += k * (e.projections(b * n, b * n) + e.mlp_flops(b * n))
    linear += (case.depth - k) * (e.projections(b * merged, b * merged) + e.mlp_flops(b * merged))
    attention = k * e.scores(b * n * n) + 4 * case.dim * b * merged * n + (case.depth - k) * e.scores(b * merged**2)
    return Claim(b * n, linear, attention)


def ats_claim(case: ReductionCase, layer_tokens: list[int], sampled: list[bool], masked: list[bool]) -> Claim:
    """ATSViT whose layer ``i`` sees ``layer_tokens[i]`` tokens per image (class token and padding
    included), samples where ``sampled`` (one class-token score row per head) and attends with a key
    mask where ``masked`` (one ``(batch, 1, 1, tokens)`` mask per layer)."""
    e, b = case.encoder, case.batch
    linear = e.embed(b * case.patches) + e.head(b)
    attention = 0
    masks = 0
    for n, sample, mask in zip(layer_tokens, sampled, masked):
        linear += e.projections(b * n, b * n) + e.mlp_flops(b * n)
        attention += e.scores(b * n * n) + (2 * e.inner * b * n if sample else 0)
        masks += b * n if mask else 0
    return Claim(b * (case.patches + 1), linear, attention, mask_elements=masks)


def _ats_layout(model: nn.Module, x: torch.Tensor) -> tuple[list[int], list[bool], list[bool]]:
    """What the fixed sampler does on ``x``: tokens per layer, which layers sample, which see a mask."""
    with torch.no_grad():
        model.eval()(x)
    handoffs = model.handoffs
    return (
        [h.shape[1] for h in handoffs],
        [h.positions is not None for h in handoffs],
        [h.key_mask is not None for h in handoffs],
    )


def _reduction_inputs(case: ReductionCase, setup: Setup) -> tuple[torch.Tensor, Callable]:
    torch.manual_seed(0)
    x = torch.randn(case.batch, 3, case.image, case.image, device=setup.device)
    target = torch.randint(0, 1000, (case.batch,), device=setup.device)
    return x, functools.partial(F.cross_entropy, target=target)


def _reduction(case: ReductionCase, name: str, subject: Row, anchor: Row) -> Comparison:
    return Comparison(
        section=REDUCTION_SECTION,
        name=f"{name} vs ViT, {case.name}, batch {case.batch}",
        rows=[anchor, subject],
        pairs=[(subject.label, anchor.label)],
        params={"case": f"{case.name} {name}", "batch": case.batch},
        baseline=anchor.label,
        items=case.batch,
        useful=subject.label,
    )


def patch_merger_comparison(case: ReductionCase, setup: Setup = CPU_FP32) -> Comparison:
    """PatchMergerViT halving the tokens at mid-depth against the same ViT with mean pooling."""
    from vit_efficient import PatchMergerViT

    x, loss = _reduction_inputs(case, setup)
    merged = case.patches // 2
    model = PatchMergerViT(**case.kwargs, patch_merge_layer=case.merge_layer, patch_merge_num_tokens=merged)
    about = f"PatchMergerViT, {case.patches} -> {merged} tokens after layer {case.merge_layer} of {case.depth}"
    subject = Row("patch-merger", model.to(setup.device), x, patch_merger_claim(case), about, loss=loss)
    anchor_claim = vit_claim(case.encoder, case.batch, case.patches, 0)
    anchor_model = ViT(**case.kwargs, pool="mean").to(setup.device)
    anchor = Row("vit", anchor_model, x, anchor_claim, "vit_core ViT, mean pooling (no block pruned)", loss=loss)
    return _reduction(case, "PatchMerger", subject, anchor)


def ats_comparison(case: ReductionCase, setup: Setup = CPU_FP32) -> Comparison:
    """ATSViT (fixed sampling) against the same ViT with its class token."""
    from vit_efficient import ATSViT

    x, loss = _reduction_inputs(case, setup)
    model = ATSViT(**case.kwargs, max_tokens_per_depth=case.budgets, sampling="fixed").to(setup.device)
    budgets = "/".join(map(str, sorted(set(case.budgets), reverse=True)))
    about = f"ATSViT, at most {budgets} patch tokens, fixed sampling"
    subject = Row("ats", model, x, ats_claim(case, *_ats_layout(model, x)), about, loss=loss)
    anchor_claim = vit_claim(case.encoder, case.batch, case.patches, 1, pruned_last_block=True)
    about = "vit_core ViT, class token (its last block runs for it only)"
    anchor = Row("vit", ViT(**case.kwargs).to(setup.device), x, anchor_claim, about, loss=loss)
    return _reduction(case, "ATS", subject, anchor)


def comparisons(quick: bool, only: tuple[str, ...], setup: Setup = CPU_FP32) -> list[tuple[str, Callable]]:
    """The selected sections' comparisons as (name, builder) pairs, as ``benchmarks.__main__`` takes them."""
    out: list[tuple[str, Callable]] = []
    if TRUNKS_SECTION in only:
        case = QUICK_TRUNKS if quick else FULL_TRUNKS
        for tokens in QUICK_TOKENS if quick else FULL_TOKENS:
            build = functools.partial(trunk_comparison, tokens, case, setup, memory=not quick)
            out.append((f"trunks {tokens}", build))
    if REDUCTION_SECTION in only and available("vit_efficient"):
        case = QUICK_REDUCTION if quick else FULL_REDUCTION
        out.append(("patch merger", functools.partial(patch_merger_comparison, case, setup)))
        out.append(("ats", functools.partial(ats_comparison, case, setup)))
    return out
