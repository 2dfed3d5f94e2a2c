"""What a benchmarked call does, counted while it runs, and the guard that every row of a
comparison does the work its label claims.

:func:`count_work` runs a call under a dispatch mode and records, per call:

* ``tokens``: token positions entering the trunk (padding included), counted by wrapping the
  trunk's ``forward`` for the call (not a module hook: a hook on our ViT's trunk would switch off
  its class-token-only last block and change the work being measured);
* ``linear_flops``: forward FLOPs of two-dimensional matrix products (linear layers,
  convolutions, patch embeddings, heads);
* ``attention_flops``: forward FLOPs of batched products (attention scores and weighted values,
  fused SDPA kernels or explicit ``bmm``/``matmul``, dense or nested);
* ``backward_flops``: every product run during ``backward()``;
* ``mask_elements``: elements of the masks handed to attention kernels (a dense n x n mask shows
  here); ``random_draws``: random-number operations (token dropout draws one per image).

FLOPs come from ``torch.utils.flop_counter``'s formulas. On CPU it has no formula for the fused
attention kernel (``_scaled_dot_product_flash_attention_for_cpu``), so a plain
``FlopCounterMode`` counts zero FLOPs for SDPA attention while an explicit softmax's ``bmm``\\ s
are counted: the two sides of a comparison would not be counted alike.  We add the CPU kernel's
forward and backward with the formulas torch uses for the CUDA flash kernel.

:class:`Claim` is the work a row's label promises (see the claim builders below), and
:func:`check_work` raises :class:`WorkMismatch` when a row's counted work departs from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

MODES = ("infer", "train")
PRODUCTS_ALONE = "products alone"
"""The timing key of a row's matrix products and attention kernels replayed alone (:func:`products_alone`)."""

FLOP_TOLERANCE = 0.01
"""Largest relative difference allowed between counted and claimed FLOPs (linear and attention
alike).  The counter's formulas are exact integer counts and the claims enumerate every matrix
product of the architectures they describe, so a faithful row matches its claim exactly; the 1%
covers a small product a future core change might add or remove (projecting the pruned block's
queries for the class token only would move a ViT-S/16 count by 0.7%).  It is far below what a
mislabel changes: a packing length dropped in one mode multiplies attention FLOPs several times,
16% padding adds 16% of linear FLOPs, one block more or less changes them by 1 / depth.  Token
counts, mask elements and random draws are integers and must match exactly."""

ATTENTION_KERNELS = {
    torch.ops.aten._scaled_dot_product_flash_attention,
    torch.ops.aten._scaled_dot_product_efficient_attention,
    torch.ops.aten._scaled_dot_product_cudnn_attention,
}
"""Fused attention kernels (CUDA) that ``torch.utils.flop_counter`` has formulas for."""
RANDOM_OPS = {
    torch.ops.aten.randn,
    torch.ops.aten.rand,
    torch.ops.aten.randint,
    torch.ops.aten.randperm,
    torch.ops.aten.bernoulli,
    torch.ops.aten.bernoulli_,
    torch.ops.aten.normal_,
    torch.ops.aten.uniform_,
    torch.ops.aten.native_dropout,
}


@dataclass(frozen=True)
class Work:
    """What one call did (see the module docstring for each field)."""

    tokens: int = 0
    linear_flops: int = 0
    attention_flops: int = 0
    backward_flops: int = 0
    mask_elements: int = 0
    random_draws: int = 0

    @property
    def forward_flops(self) -> int:
        return self.linear_flops + self.attention_flops

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    """The work a row's label promises per call: what :class:`Work` must show, forward only."""

    tokens: int
    linear_flops: int
    attention_flops: int
    mask_elements: int = 0
    random_draws: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class WorkMismatch(RuntimeError):
    """A row of a comparison does not do the work its label claims."""


def mismatches(claim: Claim, work: Work, tolerance: float = FLOP_TOLERANCE) -> list[str]:
    """How ``work`` departs from ``claim`` (empty when it does the claimed work)."""
    out = []
    for name in ("tokens", "mask_elements", "random_draws"):
        claimed, counted = getattr(claim, name), getattr(work, name)
        if claimed != counted:
            out.append(f"{name} {counted:,} where the label claims {claimed:,}")
    for name in ("linear_flops", "attention_flops"):
        claimed, counted = getattr(claim, name), getattr(work, name)
        if abs(counted - claimed) > tolerance * max(claimed, 1):
            share = f"{counted / claimed:.3f}x the claim" if claimed else "where the label claims none"
            out.append(f"{name} {counted:,} where the label claims {claimed:,} ({share})")
    return out


def check_work(comparison: str, measured: dict[str, dict[str, tuple[Claim, Work]]]) -> None:
    """Raise :class:`WorkMismatch` naming every row and mode whose counted work is not its claim.

    ``measured[label][mode] = (claim, work)``.  Rows that each do their claimed work differ from
    one another by exactly what their claims (their labels) imply."""
    problems = [
        f"  {label} ({mode}): " + "; ".join(found)
        for label, modes in measured.items()
        for mode, (claim, work) in modes.items()
        if (found := mismatches(claim, work))
    ]
    if problems:
        raise WorkMismatch(
            f"{comparison}: rows do not do the work their labels claim, so their times are not comparable:\n"
            + "\n".join(problems)
        )


# ---------------------------------------------------------------------------------------------
# Counting


def _shape(t: object) -> tuple[int, ...] | None:
    return tuple(t.shape) if isinstance(t, Tensor) and not t.is_nested else None


def _nested_sizes(t: Tensor) -> list[tuple[int, ...]]:
    """Component shapes of a nested tensor (jagged NJTs arrive unwrapped, see ``_Counter``)."""
    return [tuple(s) for s in t._nested_tensor_size().tolist()]


def _product_flops(a: Tensor, b: Tensor) -> int:
    """FLOPs of ``a @ b`` (dense with broadcasting, or nested component by component)."""
    if a.is_nested or b.is_nested:
        pairs = zip(_nested_sizes(a), _nested_sizes(b))
        return sum(2 * math.prod(sa[:-1]) * sa[-1] * sb[-1] for sa, sb in pairs)
    if a.ndim == 1 or b.ndim == 1:
        return 2 * max(a.numel(), b.numel())
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return 2 * math.prod(batch) * a.shape[-2] * a.shape[-1] * b.shape[-1]


def _is_batched(a: Tensor, b: Tensor) -> bool:
    """A product over a batch of matrices (attention) rather than tokens times a weight matrix."""
    rank = (lambda t: len(_nested_sizes(t)[0]) + 1) if a.is_nested else (lambda t: t.ndim)
    return rank(a) > 2 and (b.is_nested or b.ndim > 2)


def _cpu_flash_forward(query, key, value, *args, out_val=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)


def _cpu_flash_backward(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


def _draws(packet: object, args: tuple) -> int:
    """1 for a random-number op, 0 for a dropout that draws nothing (rate 0 or not training)."""
    if packet is torch.ops.aten.native_dropout:
        p, train = args[1], args[2] if len(args) > 2 else True
        return int(p > 0 and train is not False)
    return 1


def _mask_argument(func: object, args: tuple, kwargs: dict) -> object:
    """The mask (``attn_mask``) or additive bias (``attn_bias``) handed to an attention kernel,
    positional or keyword (CUDA's kernels take the bias positionally)."""
    for i, argument in enumerate(func._schema.arguments):
        if argument.name in ("attn_mask", "attn_bias"):
            return args[i] if i < len(args) else kwargs.get(argument.name)
    return None


class _Counter(TorchDispatchMode):
    """Counts the work of the ops dispatched under it; ``record``: also keeps every op whose FLOPs
    it counts, with its operands, in ``products``."""

    def __init__(self, record: bool = False) -> None:
        super().__init__()
        self.counts = {"linear": 0, "attention": 0, "backward": 0, "mask": 0, "random": 0}
        self.record = record
        self.products: list[tuple[object, tuple, dict]] = []
        self._op: tuple[object, tuple, dict] | None = None

    def _add(self, kind: str, flops: int) -> None:
        backward = torch._C._current_graph_task_id() != -1
        self.counts["backward" if backward else kind] += int(flops)
        if self.record and flops:
            self.products.append(self._op)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(t is not Tensor and issubclass(t, Tensor) for t in types):
            return NotImplemented  # a tensor subclass (jagged NJT): count the ops it decomposes into
        out = func(*args, **kwargs)
        self._op = (func, args, kwargs)
        packet = func._overloadpacket
        if packet in RANDOM_OPS:
            self.counts["random"] += _draws(packet, args)
        elif packet is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
            self._add("attention", _cpu_flash_forward(*args, **kwargs))
            self._count_mask(_mask_argument(func, args, kwargs))
        elif packet is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
            self._add("attention", _cpu_flash_backward(*args, **kwargs))
        elif packet in (torch.ops.aten.matmul, torch.ops.aten.linear):
            a, b = args[0], args[1]
            if packet is torch.ops.aten.linear:
                b = b.t()
            self._add("attention" if _is_batched(a, b) else "linear", _product_flops(a, b))
        elif packet is torch.ops.aten.matmul_backward:
            self._add("attention", 2 * _product_flops(args[1], args[2]))  # (grad, self, other, mask)
        elif packet in flop_counter.flop_registry:
            flops = flop_counter.flop_registry[packet](*args, **kwargs, out_val=out)
            batched = packet in (torch.ops.aten.bmm, torch.ops.aten.baddbmm) or packet in ATTENTION_KERNELS
            self._add("attention" if batched else "linear", flops)
            if packet in ATTENTION_KERNELS:
                self._count_mask(_mask_argument(func, args, kwargs))
        return out

    def _count_mask(self, mask: object) -> None:
        if isinstance(mask, Tensor) and torch._C._current_graph_task_id() == -1:
            self.counts["mask"] += mask.numel()


def token_positions(x: object) -> int:
    """Token positions of a trunk input: ``batch * tokens`` of a dense ``(batch, tokens, dim)``
    tensor (padding included), the total length of a jagged nested one."""
    if not isinstance(x, Tensor):
        raise TypeError(f"the trunk's first argument must be a tensor, got {type(x).__name__}")
    if x.is_nested:
        return int(x.values().shape[0]) if x.layout == torch.jagged else sum(s[0] for s in _nested_sizes(x))
    return math.prod(x.shape[:-1])


@contextmanager
def _counting_tokens(trunk: nn.Module, seen: list[int]) -> Iterator[None]:
    """Count the tokens of every call of ``trunk`` through an instance-level ``forward`` wrapper."""
    original = trunk.forward

    def forward(x: object, *args: object, **kwargs: object) -> object:
        seen.append(token_positions(x))
        return original(x, *args, **kwargs)

    trunk.forward = forward
    try:
        yield
    finally:
        del trunk.forward


def count_work(call: Callable[[], object], trunk: nn.Module) -> Work:
    """Run ``call`` once and return what it did (``trunk``: the module whose input is counted in tokens)."""
    seen: list[int] = []
    counter = _Counter()
    with _counting_tokens(trunk, seen), counter:
        call()
    c = counter.counts
    return Work(sum(seen), c["linear"], c["attention"], c["backward"], c["mask"], c["random"])


def products_alone(call: Callable[[], object]) -> Callable[[], None]:
    """Run ``call`` once and return a call that runs again exactly its matrix products and attention
    kernels (every op whose FLOPs :func:`count_work` counts, forward and backward), on the same
    operands, and nothing else: the time the call would take if its other ops (norms,
    activations, copies, the optimizer, Python) took none, the ceiling of its FLOP rate."""
    counter = _Counter(record=True)
    with counter:
        call()
    products = counter.products

    def replay() -> None:
        with torch.no_grad():
            for func, args, kwargs in products:
                func(*args, **kwargs)

    return replay


# ---------------------------------------------------------------------------------------------
# Claims: the work an architecture does on a given layout, from its configuration alone


@dataclass(frozen=True)
class Encoder:
    """The matrix products of a pre-norm transformer encoder with a patch embedding and a head."""

    dim: int
    depth: int
    heads: int
    dim_head: int
    mlp: int
    patch_dim: int
    classes: int

    @property
    def inner(self) -> int:
        return self.heads * self.dim_head

    def projections(self, queries: int, keys: int) -> int:
        """Queries, keys and values (keys and values for ``keys`` tokens) and the output projection."""
        return 2 * self.dim * self.inner * (2 * queries + 2 * keys)

    def mlp_flops(self, tokens: int) -> int:
        return 4 * self.dim * self.mlp * tokens

    def scores(self, pairs: int) -> int:
        """Attention scores and weighted values over ``pairs`` (query, key) positions per head."""
        return 4 * self.inner * pairs

    def embed(self, patches: int) -> int:
        return 2 * self.patch_dim * self.dim * patches

    def head(self, items: int) -> int:
        return 2 * self.dim * self.classes * items


def vit_claim(encoder: Encoder, batch: int, patches: int, prefix: int, *, pruned_last_block: bool = False) -> Claim:
    """ViT / SimpleViT on ``batch`` images of ``patches`` patches and ``prefix`` class tokens.

    ``pruned_last_block``: the last block computes keys and values (from one fused qkv product)
    for every token, and its queries, output projection and MLP for the class token only."""
    n = patches + prefix
    tokens = batch * n
    full_blocks = encoder.depth - 1 if pruned_last_block else encoder.depth
    linear = encoder.embed(batch * patches) + encoder.head(batch)
    linear += full_blocks * (encoder.projections(tokens, tokens) + encoder.mlp_flops(tokens))
    attention = full_blocks * encoder.scores(batch * n * n)
    if pruned_last_block:
        qkv = 2 * encoder.dim * 3 * encoder.inner * tokens
        linear += qkv + 2 * encoder.inner * encoder.dim * batch + encoder.mlp_flops(batch)
        attention += encoder.scores(batch * n)
    return Claim(tokens, linear, attention)


def attention_layer_claim(dim: int, heads: int, dim_head: int, tokens: int) -> Claim:
    """One self-attention layer (qkv, scores, output projection) on one sequence of ``tokens``."""
    layer = Encoder(dim, 1, heads, dim_head, 0, 0, 0)
    return Claim(tokens, layer.projections(tokens, tokens), layer.scores(tokens * tokens))


def pack_greedily(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Groups of consecutive lengths, a new group whenever the next would exceed ``max_len``
    (vit-pytorch's ``group_images_by_max_seq_len``)."""
    groups: list[list[int]] = [[]]
    used = 0
    for n in lengths:
        if used + n > max_len:
            groups.append([])
            used = 0
        groups[-1].append(n)
        used += n
    return groups


def packed_navit_claim(encoder: Encoder, lengths: Sequence[int]) -> Claim:
    """Exact packing (ours, and vit-pytorch's nested tensors): every image's tokens once, each
    image attending to itself only; attention pooling with one query per image."""
    total, images, pairs = sum(lengths), len(lengths), sum(n * n for n in lengths)
    linear = encoder.embed(total) + encoder.depth * (encoder.projections(total, total) + encoder.mlp_flops(total))
    linear += encoder.projections(images, total) + encoder.head(images)
    attention = encoder.depth * encoder.scores(pairs) + encoder.scores(total)
    return Claim(total, linear, attention)


def padded_navit_claim(encoder: Encoder, lengths: Sequence[int], max_len: int) -> Claim:
    """vit-pytorch's ``na_vit`` with ``group_images=True, group_max_seq_len=max_len``: groups padded
    to the longest, a dense (group, 1, width, width) mask per layer, pooling queries padded to the
    largest image count of a group, each against every position of its group."""
    groups = pack_greedily(lengths, max_len)
    width, count, queries = max(sum(g) for g in groups), len(groups), max(len(g) for g in groups)
    tokens = count * width
    linear = encoder.embed(tokens) + encoder.depth * (encoder.projections(tokens, tokens) + encoder.mlp_flops(tokens))
    linear += encoder.projections(count * queries, tokens) + encoder.head(len(lengths))
    attention = encoder.depth * encoder.scores(count * width * width) + encoder.scores(count * queries * width)
    masks = encoder.depth * count * width * width + count * queries * width
    return Claim(tokens, linear, attention, mask_elements=masks)
