"""Multi-head attention on ``F.scaled_dot_product_attention`` (Vaswani et al., arXiv 1706.03762).

Three layouts share one kernel call:

* dense ``(batch, tokens, dim)`` with an optional boolean mask;
* packed: several variable-length sequences concatenated along the token axis of a
  ``(1, total_tokens, dim)`` tensor, described by a :class:`~vit_core.layers.packing.SequencePacking`.  Where torch's
  variable-length attention runs (CUDA, a flash-attention dtype and head width: see
  :func:`~vit_core.layers.packing.varlen_supported`) the whole packed axis is one ``varlen_attn`` call with cumulative
  sequence lengths.  Elsewhere, sequences being stored sorted by length, every run of
  equal-length sequences is a contiguous slice attended as one ``(count, heads, length,
  dim_head)`` batch.  Either way: no padding, no dense mask, and no attention between sequences;
* recording: when a :class:`~vit_core.tools.Recorder` asks (or a subclass transforms the
  scores), the softmax maps are computed explicitly and handed to it; otherwise they are never
  materialised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.layers import packing as packed
from vit_core.layers.packing import SequencePacking
from vit_core.validation import check_choice, check_positive_int, check_probability

AttentionRecorder = Callable[[nn.Module, Tensor], None]


class HeadNorm(nn.Module):
    """Per-head normalisation of queries or keys over ``dim_head`` (QK-norm, ViT-22B arXiv 2302.05442).

    ``kind="rms"`` is RMSNorm with a learned gain per head and channel; ``kind="layer"`` is a
    bias-free LayerNorm shared by all heads.
    """

    def __init__(self, heads: int, dim_head: int, kind: str = "rms", eps: float = 1e-6) -> None:
        super().__init__()
        self.kind = check_choice("qk_norm", kind, ("rms", "layer"))
        self.eps = eps
        shape = (heads, dim_head) if kind == "rms" else (dim_head,)
        self.weight = nn.Parameter(torch.ones(shape))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(batch, heads, tokens, dim_head)``; the output has ``x``'s dtype (autocast computes the
        norm in float32: cast back, so queries and keys meet the values in one dtype in attention)."""
        if self.kind == "layer":
            return F.layer_norm(x, x.shape[-1:], self.weight, None, 1e-5).to(x.dtype)
        # RMSNorm as x / sqrt(|x|^2 / d + eps): one norm kernel reads x, the rest is per row; measured
        # 15-25% faster forward and backward than F.rms_norm, whose CPU path squares, sums and
        # divides in separate passes over x (the same formula, equal to it within 2e-6)
        mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square() / x.shape[-1]
        return (x * torch.rsqrt(mean_square + self.eps) * self.weight.unsqueeze(-2)).to(x.dtype)


def _as_key_mask(mask: Tensor | None, batch: int, queries: int, keys: int) -> Tensor | None:
    """Accept a key-padding mask ``(batch, keys)`` or an attention mask broadcastable to
    ``(batch, heads, queries, keys)``; ``True`` means "may attend"."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}")
    if mask.ndim == 2:
        if tuple(mask.shape) != (batch, keys):
            raise ValueError(f"a 2-D mask must be (batch, keys)=({batch}, {keys}), got {tuple(mask.shape)}")
        return mask[:, None, None, :]
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[-2:] != (queries, keys):
        raise ValueError(
            f"mask must be (batch, keys), (batch, queries, keys) or (batch, heads, queries, keys) with "
            f"queries={queries}, keys={keys}; got {tuple(mask.shape)}"
        )
    return mask


def check_queries(queries: int, tokens: int) -> int:
    """``queries=``: how many leading tokens to compute, a positive int no larger than ``tokens``."""
    check_positive_int("queries", queries)
    if queries > tokens:
        raise ValueError(f"queries must be at most the number of tokens ({tokens}), got {queries}")
    return queries


def _first_queries(q: Tensor, mask: Tensor | None, queries: int) -> tuple[Tensor, Tensor | None]:
    """Keep the first ``queries`` queries of ``q`` ``(batch, heads, tokens, d)`` and their mask rows."""
    check_queries(queries, q.shape[2])
    if mask is not None and mask.shape[-2] > 1:
        mask = mask[..., :queries, :]
    return q[:, :, :queries], mask


def _check_bias(bias: Tensor | None, batch: int, heads: int, queries: int, keys: int) -> Tensor | None:
    """An additive float bias broadcastable to ``(batch, heads, queries, keys)``."""
    if bias is None:
        return None
    if not isinstance(bias, Tensor) or not bias.is_floating_point():
        raise TypeError(f"bias must be a floating-point tensor (added to the scores), got {bias!r:.60}")
    try:
        torch.broadcast_shapes(bias.shape, (batch, heads, queries, keys))
    except RuntimeError:
        raise ValueError(
            f"bias must broadcast to (batch, heads, queries, keys)=({batch}, {heads}, {queries}, {keys}), "
            f"got shape {tuple(bias.shape)}"
        ) from None
    return bias


def _combine(mask: Tensor | None, bias: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """One ``attn_mask`` for SDPA: the boolean mask, the float bias, or the bias with -inf where masked."""
    if bias is None:
        return mask
    bias = bias.to(dtype)
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))


def _eager_cpu(q: Tensor) -> bool:
    """Whether SDPA's CPU kernel selection applies: eager on CPU.  A traced graph keeps the SDPA
    node as written (ONNX's Attention, inductor's own decomposition)."""
    return q.device.type == "cpu" and not (torch.compiler.is_compiling() or torch.compiler.is_exporting())


def _as_4d(attn_mask: Tensor | None) -> Tensor | None:
    """``attn_mask`` viewed as 4-D: SDPA's fused CPU kernel takes 2-D and 4-D masks but sends a
    3-D one (a per-head bias) to its unfused math kernel."""
    if attn_mask is None or attn_mask.ndim >= 4:
        return attn_mask
    return attn_mask[(None,) * (4 - attn_mask.ndim)]


EXPLICIT_CPU_TRAINING_KEYS = {torch.float32: 64, torch.float64: 64, torch.bfloat16: 256, torch.float16: 256}
"""Up to how many keys the explicit path trains faster than SDPA's fused CPU kernel, by dtype.  Measured
with torch 2.13 on 2 Xeon cores (AMX), forward and backward of one attention call: at 49 keys (a 28x28
image in 4x4 patches) the fused kernel takes 7x longer in bfloat16 and 1.7x in float32; at 197 keys
(ViT-B/16 at 224 px) 2.2x in bfloat16; it wins from about 100 keys in float32 and about 800 in
bfloat16.  Its backward is the slow half; inference keeps the fused kernel at every length.  Reduced
precision stops at 256 keys, not at the crossover: the explicit path keeps each call's (queries x keys)
weights for the backward, which at 512 keys would be 400 MB a layer for ViT-B at batch 64."""


def _cpu_training_prefers_explicit(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """Whether this CPU call computes gradients at a length where the explicit path is faster
    (:data:`EXPLICIT_CPU_TRAINING_KEYS`), eager or under ``torch.compile`` (whose CPU graph calls the same
    fused kernel); an export keeps the SDPA node."""
    if q.device.type != "cpu" or torch.compiler.is_exporting():
        return False
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    return needs_grad and k.shape[-2] <= EXPLICIT_CPU_TRAINING_KEYS.get(q.dtype, 0)


def _sdpa_falls_back(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout: float) -> bool:
    """Whether SDPA would skip its fused kernel for its unfused math kernel.

    On CPU (torch 2.13) the fused kernel does not run when a float mask needs a gradient (a
    learned bias in training), when the values are wider or narrower than the queries (LeViT),
    when attention dropout is on, or when the last axis is strided.  SDPA then computes the
    scores explicitly, with a "safe" softmax that adds three passes over them to guard fully
    masked rows.  The explicit path of :meth:`Attention.attend` is the same math without those
    passes (a bias is finite and a mask is filled with the dtype's minimum): about 20% faster
    forward and backward at window sizes (8 x 64 windows of 50 tokens), 2x in inference."""
    learned_bias = bias is not None and bias.requires_grad and torch.is_grad_enabled()
    return learned_bias or v.shape[-1] != q.shape[-1] or dropout > 0 or any(t.stride(-1) != 1 for t in (q, k, v))


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, open at every step of the computation.

    ``forward`` calls, in order: :meth:`project` (queries, keys, values), the QK-norms,
    :meth:`score_bias` (an additive bias such as a relative-position table), then :meth:`attend`,
    the attention step itself.  The dense, packed and ``queries=`` paths all go through these, so
    a subclass changes one step without re-writing ``forward``:

    * override :meth:`build_projections` and :meth:`project` for other projections (``grid=``
      gives the token grid, e.g. for convolutional projections);
    * override :meth:`score_bias` to add a bias; it stays on the fused kernel;
    * override :meth:`transform_scores` (pre-softmax) or :meth:`transform_weights` (post-softmax,
      e.g. mixing across heads): the layer then computes the scores explicitly (the class
      attribute ``explicit_scores`` is set automatically);
    * override :meth:`attend` to change the computation and call ``super().attend`` with
      transformed queries, keys or values (a learned temperature, attention over channels).

    Args:
        dim: token width.
        heads: number of heads.
        dim_head: width of each head (independent of ``dim``).
        dropout: dropout on the attention weights (and on the output, unless ``out_dropout`` is given).
        qkv_bias: bias on the qkv projection.
        qk_norm: ``None``, ``"rms"`` or ``"layer"``: normalise queries and keys per head.
        scale: logit scale; ``None`` means ``dim_head ** -0.5``.
        out_bias: bias on the output projection.
        project_out: ``None`` projects back to ``dim`` unless one head already has width ``dim``.
        out_dropout: dropout on the output projection; ``None`` means ``dropout``.
        dim_value: width of each head's values (and of the output projection's input per head);
            ``None`` means ``dim_head`` (LeViT uses wider values than keys).
    """

    explicit_scores: ClassVar[bool] = False
    """Whether scores are always computed explicitly (set for subclasses that transform them)."""
    packed_varlen: ClassVar[bool] = True
    """Whether packed attention may be one variable-length kernel call (cleared for subclasses that change
    :meth:`attend` or add a :meth:`score_bias`: the kernel takes neither)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "explicit_scores" not in cls.__dict__:
            cls.explicit_scores = cls.explicit_scores or any(
                name in cls.__dict__ for name in ("transform_scores", "transform_weights")
            )
        if "packed_varlen" not in cls.__dict__:
            cls.packed_varlen = cls.packed_varlen and not any(
                name in cls.__dict__ for name in ("attend", "score_bias", "transform_scores", "transform_weights")
            )

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        *,
        qkv_bias: bool = False,
        qk_norm: str | None = None,
        scale: float | None = None,
        out_bias: bool = True,
        project_out: bool | None = None,
        out_dropout: float | None = None,
        dim_value: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.heads = check_positive_int("heads", heads)
        self.dim_head = check_positive_int("dim_head", dim_head)
        self.dim_value = dim_head if dim_value is None else check_positive_int("dim_value", dim_value)
        self.dropout = check_probability("dropout", dropout)
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
            raise ValueError(f"scale must be a positive float or None, got {scale!r}")
        self.scale = scale
        self.build_projections(dim, heads * dim_head, heads * self.dim_value, qkv_bias)
        self.q_norm = HeadNorm(heads, dim_head, qk_norm) if qk_norm else nn.Identity()
        self.k_norm = HeadNorm(heads, dim_head, qk_norm) if qk_norm else nn.Identity()
        if project_out is None:
            project_out = not (heads == 1 and self.dim_value == dim)
        self.to_out = nn.Linear(heads * self.dim_value, dim, bias=out_bias) if project_out else nn.Identity()
        self.out_dropout = nn.Dropout(dropout if out_dropout is None else check_probability("out_dropout", out_dropout))
        self.recorder: AttentionRecorder | None = None

    def build_projections(self, dim: int, key_width: int, value_width: int, bias: bool) -> None:
        """Create the input projections (called once by ``__init__``): one fused ``to_qkv`` here.

        ``key_width = heads * dim_head`` (queries and keys), ``value_width = heads * dim_value``."""
        self.to_qkv = nn.Linear(dim, 2 * key_width + value_width, bias=bias)

    def _heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)

    def project(
        self, x: Tensor, context: Tensor | None = None, *, grid: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values as ``(batch, heads, tokens, dim_head)``.

        ``grid``: the spatial grid of ``x``'s tokens when the caller passes it (unused here)."""
        if context is not None:
            raise ValueError("this Attention is self-attention; use CrossAttention to pass context")
        b, n, _ = x.shape
        qkv = self.to_qkv(x)
        if self.dim_value == self.dim_head:
            q, k, v = qkv.view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
            return q, k, v
        key_width = self.heads * self.dim_head
        q, k, v = qkv.split([key_width, key_width, self.heads * self.dim_value], dim=-1)
        return self._heads(q), self._heads(k), self._heads(v)

    def score_bias(self, q: Tensor, k: Tensor) -> Tensor | None:
        """An additive bias for the scores, broadcastable to ``(batch, heads, queries, keys)``; none here."""
        return None

    def transform_scores(self, scores: Tensor) -> Tensor:
        """Pre-softmax scores ``(batch, heads, queries, keys)`` (scaled, bias added) -> scores."""
        return scores

    def transform_weights(self, weights: Tensor) -> Tensor:
        """Post-softmax weights ``(batch, heads, queries, keys)`` -> the weights applied to the values."""
        return weights

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
        """The attention step: ``(batch, heads, queries, d)`` outputs from queries, keys and values.

        ``mask``: boolean, ``True`` = may attend, broadcastable to ``(batch, heads, queries, keys)``;
        ``bias``: float, added to the scores.  ``scale`` defaults to the layer's.  The fused kernel runs
        unless the scores must be seen (a Recorder is attached or the subclass transforms them) or
        the fused kernel would not run anyway (see :func:`_sdpa_falls_back`), or, on CPU, would train slower
        (see :data:`EXPLICIT_CPU_TRAINING_KEYS`).
        """
        scale = (self.scale if self.scale is not None else q.shape[-1] ** -0.5) if scale is None else scale
        dropout = self.dropout if self.training else 0.0
        eager_cpu = _eager_cpu(q)
        if (
            self.recorder is None
            and not self.explicit_scores
            and not (eager_cpu and _sdpa_falls_back(q, k, v, bias, dropout))
            and not _cpu_training_prefers_explicit(q, k, v)
        ):
            attn_mask = _combine(mask, bias, q.dtype)
            attn_mask = _as_4d(attn_mask) if eager_cpu else attn_mask
            if not eager_cpu:  # every fused GPU kernel needs a unit-stride last axis: one copy beats the math kernel
                q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, scale=scale)
        scores = (q * scale) @ k.transpose(-1, -2)  # scaling the queries is cheaper than scaling the scores
        if bias is not None:
            scores = scores + bias.to(scores.dtype)
        scores = self.transform_scores(scores)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = self.transform_weights(scores.softmax(dim=-1))
        if self.recorder is not None:
            self.recorder(self, weights)
        return F.dropout(weights, dropout) @ v

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        packing: SequencePacking | None = None,
        context_packing: SequencePacking | None = None,
        queries: int | None = None,
        grid: tuple[int, ...] | None = None,
    ) -> Tensor:
        """``x``: ``(batch, tokens, dim)``.

        ``mask`` (dense layout): boolean, ``True`` where attending is allowed, as ``(batch, keys)`` or
        broadcastable to ``(batch, heads, queries, keys)``.  ``bias`` (dense layout): a float tensor
        added to the scores, broadcastable to ``(batch, heads, queries, keys)`` (summed with
        :meth:`score_bias`).  ``packing``: the layout of ``x`` when it holds packed sequences
        (batch 1); ``context_packing`` the layout of ``context`` (defaults to ``packing``).
        ``queries`` (dense layout): only the first ``queries`` tokens attend and are returned,
        ``(batch, queries, dim)``; every token still serves as key and value.  ``grid``: the spatial
        grid of ``x``'s tokens, handed to :meth:`project`.
        """
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (batch, tokens, dim={self.dim}), got shape {tuple(x.shape)}")
        q, k, v = self.project(x, context, grid=grid) if grid is not None else self.project(x, context)
        q, k = self.q_norm(q), self.k_norm(k)
        if packing is None:
            bias = self._total_bias(bias, q, k)
            mask = _as_key_mask(mask, q.shape[0], q.shape[2], k.shape[2])
            if queries is not None:
                q, mask = _first_queries(q, mask, queries)
                if bias is not None and bias.shape[-2] > 1:
                    bias = bias[..., :queries, :]
            out = self.attend(q, k, v, mask=mask, bias=bias)
            out = out.transpose(1, 2).reshape(x.shape[0], q.shape[2], -1)
        else:
            if mask is not None or bias is not None:
                raise ValueError("mask and bias apply to the dense layout; they cannot be combined with packing")
            if queries is not None:
                raise ValueError("queries applies to the dense layout; it cannot be combined with packing")
            out = self._packed(q, k, v, packing, context_packing or packing)
        return self.out_dropout(self.to_out(out))

    def _total_bias(self, bias: Tensor | None, q: Tensor, k: Tensor) -> Tensor | None:
        b, h, n, m = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        bias = _check_bias(bias, b, h, n, m)
        own = self.score_bias(q, k)
        if own is None:
            return bias
        own = _check_bias(own, b, h, n, m)
        return own if bias is None else own + bias

    def uses_varlen(self, q: Tensor, k: Tensor, v: Tensor) -> bool:
        """Whether packed attention over these queries, keys and values is one variable-length kernel call: the
        device supports it (:func:`~vit_core.layers.packing.varlen_supported`), the layer computes plain
        attention (no transformed scores, bias or own ``attend``), no Recorder is attached and no attention
        dropout is on."""
        plain = self.packed_varlen and not self.explicit_scores and self.recorder is None
        return plain and not (self.training and self.dropout > 0) and packed.varlen_supported(q, k, v)

    def _packed(self, q: Tensor, k: Tensor, v: Tensor, packing: SequencePacking, kv_packing: SequencePacking) -> Tensor:
        """Attention per packed sequence; returns ``(1, total_queries, heads * dim_head)``."""
        if q.shape[0] != 1 or q.shape[2] != packing.total_tokens or k.shape[2] != kv_packing.total_tokens:
            raise ValueError(
                f"packed input must be (1, {packing.total_tokens}, dim) with context of "
                f"{kv_packing.total_tokens} tokens; got queries {q.shape[2]} and keys {k.shape[2]}"
            )
        if packing.num_sequences != kv_packing.num_sequences:
            raise ValueError(
                f"packings hold {packing.num_sequences} and {kv_packing.num_sequences} sequences; they must match"
            )
        if self.uses_varlen(q, k, v):
            scale = self.scale if self.scale is not None else q.shape[-1] ** -0.5
            return packed.varlen_attention(q, k, v, packing, kv_packing, scale)
        pairs = packed.paired_buckets(packing, kv_packing)
        q_buckets, kv_buckets = [qb for qb, _ in pairs], [kb for _, kb in pairs]
        split = packed.unpack_buckets
        per_bucket = zip(q_buckets, split(q, q_buckets), split(k, kv_buckets), split(v, kv_buckets))
        outs = []
        for qb, qi, ki, vi in per_bucket:
            out = self.attend(qi, ki, vi, bias=self.score_bias(qi, ki))
            outs.append(out.transpose(1, 2).reshape(qb.count * qb.length, -1))
        return torch.cat(outs).unsqueeze(0)


class CrossAttention(Attention):
    """Attention whose keys and values come from ``context`` (itself when omitted)."""

    def build_projections(self, dim: int, key_width: int, value_width: int, bias: bool) -> None:
        self.to_q = nn.Linear(dim, key_width, bias=bias)
        self.to_kv = nn.Linear(dim, key_width + value_width, bias=bias)

    def project(
        self, x: Tensor, context: Tensor | None = None, *, grid: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        context = x if context is None else context
        if context.ndim != 3 or context.shape[-1] != self.dim:
            raise ValueError(f"context must be (batch, tokens, dim={self.dim}), got shape {tuple(context.shape)}")
        k, v = self.to_kv(context).split([self.heads * self.dim_head, self.heads * self.dim_value], dim=-1)
        return self._heads(self.to_q(x)), self._heads(k.contiguous()), self._heads(v.contiguous())
