"""Variable-length sequences packed on one token axis (NaViT's batches): their layout, and the attention kernels
that take them whole.

A :class:`SequencePacking` stores sequences sorted by length, so every run of equal-length sequences (a
:class:`Bucket`) is a contiguous slice that attends as one ``(count, heads, length, dim_head)`` batch.  Where
torch's variable-length attention runs (:func:`varlen_supported`), the whole axis is one call instead
(:func:`varlen_attention`, with cumulative sequence lengths made on the device).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # torch before 2.10 has no variable-length attention: packed attention runs per run
    varlen_attn = None

VARLEN_DTYPES = (torch.float16, torch.bfloat16)
"""The dtypes of torch's variable-length (flash) attention kernel."""
VARLEN_MAX_HEAD_WIDTH = 256
"""The widest head flash attention takes (and widths must be multiples of 8)."""
VARLEN_MIN_CAPABILITY = (8, 0)
"""Flash attention's oldest GPU architecture (Ampere)."""


@dataclass(frozen=True)
class Bucket:
    """``count`` sequences of ``length`` tokens each, starting at token ``start`` of the packed axis."""

    start: int
    count: int
    length: int


@dataclass(frozen=True)
class SequencePacking:
    """Layout of variable-length sequences packed, in non-decreasing length order, on one token axis."""

    lengths: tuple[int, ...]
    buckets: tuple[Bucket, ...]
    _offsets: dict[torch.device, Tensor] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_sorted_lengths(cls, lengths: Sequence[int]) -> SequencePacking:
        lengths = tuple(int(n) for n in lengths)
        if any(b < a for a, b in itertools.pairwise(lengths)):
            raise ValueError(f"lengths must be sorted in non-decreasing order, got {lengths}")
        buckets: list[Bucket] = []
        start = 0
        for n in lengths:
            if buckets and buckets[-1].length == n:
                last = buckets[-1]
                buckets[-1] = Bucket(last.start, last.count + 1, n)
            else:
                buckets.append(Bucket(start, 1, n))
            start += n
        return cls(lengths, tuple(buckets))

    @property
    def total_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def num_sequences(self) -> int:
        return len(self.lengths)

    @property
    def max_length(self) -> int:
        """The longest sequence's token count (the last: lengths are sorted)."""
        return self.lengths[-1]

    def cumulative_lengths(self, device: torch.device) -> Tensor:
        """Where each sequence starts on the packed axis, then the total: ``(num_sequences + 1,)`` int32 on
        ``device``, as variable-length attention takes it.  Made on the device from the buckets (one
        ``arange`` per run, no host-to-device copy) and kept for later layers."""
        if device not in self._offsets:
            ints = dict(device=device, dtype=torch.int32)
            starts = [torch.arange(b.count, **ints) * b.length + b.start for b in self.buckets]
            total = torch.full((1,), self.total_tokens, **ints)
            self._offsets[device] = torch.cat([*starts, total])
        return self._offsets[device]

    def with_length(self, length: int) -> SequencePacking:
        """The same sequences, each ``length`` tokens long (e.g. one pooling query per sequence)."""
        return SequencePacking.from_sorted_lengths([length] * self.num_sequences)


def paired_buckets(queries: SequencePacking, keys: SequencePacking) -> tuple[tuple[Bucket, Bucket], ...]:
    """Pair query and key buckets that hold the same sequences (keys decide the grouping)."""
    if queries is keys:
        return tuple((b, b) for b in keys.buckets)
    return tuple(zip(regroup(keys, queries), keys.buckets))


def regroup(source: SequencePacking, target: SequencePacking) -> tuple[Bucket, ...]:
    """Buckets of ``target`` cut at the sequence boundaries of ``source``'s buckets."""
    if source.num_sequences != target.num_sequences:
        raise ValueError(f"packings hold {source.num_sequences} and {target.num_sequences} sequences; they must match")
    out, first = [], 0
    offsets = [0]
    for n in target.lengths:
        offsets.append(offsets[-1] + n)
    for bucket in source.buckets:
        seqs = range(first, first + bucket.count)
        lengths = {target.lengths[i] for i in seqs}
        if len(lengths) != 1:
            raise ValueError("the query packing must group sequences exactly as the key packing does")
        out.append(Bucket(offsets[first], bucket.count, lengths.pop()))
        first += bucket.count
    return tuple(out)


def varlen_supported(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """Whether torch's variable-length attention runs these packed ``(1, heads, tokens, d)`` queries, keys
    and values: flash attention's rules (a CUDA device of Ampere or later with the kernel built and
    enabled, float16 or bfloat16, one head width for all three, a multiple of 8 up to 256)."""
    if varlen_attn is None or not q.is_cuda or not torch.backends.cuda.flash_sdp_enabled():
        return False
    width = q.shape[-1]
    return (
        q.dtype in VARLEN_DTYPES
        and k.dtype == v.dtype == q.dtype
        and k.shape[-1] == v.shape[-1] == width
        and width % 8 == 0
        and width <= VARLEN_MAX_HEAD_WIDTH
        and torch.cuda.get_device_capability(q.device) >= VARLEN_MIN_CAPABILITY
    )


def unpack_buckets(t: Tensor, buckets: Sequence[Bucket]) -> list[Tensor]:
    """``(1, heads, total, d)`` -> one ``(count, heads, length, d)`` view per bucket.

    The buckets tile the token axis in order, so this is one ``split``: its backward is a single
    concatenation, where slicing bucket by bucket would scatter each gradient into a zero-filled
    copy of the whole axis (quadratic in the number of buckets).
    """
    h, d = t.shape[1], t.shape[-1]
    chunks = t[0].split([b.count * b.length for b in buckets], dim=1)
    return [c.reshape(h, b.count, b.length, d).transpose(0, 1) for c, b in zip(chunks, buckets)]


def varlen_attention(
    q: Tensor, k: Tensor, v: Tensor, packing: SequencePacking, kv_packing: SequencePacking, scale: float
) -> Tensor:
    """One variable-length attention call over packed ``(1, heads, tokens, d)`` queries, keys and values;
    returns ``(1, total_queries, heads * d)``."""
    out = varlen_attn(
        *(t[0].transpose(0, 1) for t in (q, k, v)),  # (tokens, heads, d): the kernel's layout
        packing.cumulative_lengths(q.device),
        kv_packing.cumulative_lengths(q.device),
        packing.max_length,
        kv_packing.max_length,
        scale=scale,
    )
    return out.reshape(1, q.shape[2], -1)
