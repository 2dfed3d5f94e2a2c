"""Helpers for parity tests against a reference implementation (vit-pytorch, the test oracle).

:func:`perturb` is the first step of every parity test: at a reference's initial weights every
norm gain is 1 and every norm bias (and many zero-initialised tensors) 0, so a norm in the wrong
place, a dropped bias or a mis-broadcast per-head gain all give the same output as the right
model.  Moving every parameter and buffer off its initial value first makes them visible.

Parity is then compared in float64 (:func:`assert_float64_close`): both models ``.double()`` before the
weights are imported, on float64 inputs.  In float32 the order in which a CPU's kernels sum (AVX2 or
AVX-512 blocking, oneDNN's choice of algorithm) moves outputs by up to ~1e-5 of their scale, so a float32
tolerance either fails on another processor or is loose enough to hide a changed norm ``eps``; in
float64 the same reordering stays near 1e-15, while :data:`FLOAT64_TOLERANCE` still catches a changed
``eps``.  One float32 check per test file (:func:`assert_float32_close`) keeps the precision the models
run in covered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from vit_core.layers import HeadNorm

FLOAT64_TOLERANCE = 1e-10
"""Absolute and relative tolerance of float64 parity.  Summation order moves float64 outputs of these
test-size models (scale ~1-10) by ~1e-15; a float32-rounded constant on one side moves them by ~1e-8 and
a norm ``eps`` of 1e-6 instead of 1e-5 by ~1e-6 (measured on ViT, PiT, LeViT, CvT, NesT), both caught."""

FLOAT32_TOLERANCE = 1e-4
"""float32 parity may move an output by this fraction of the largest reference output.  float32 keeps
~7 digits (eps 1.2e-7); reordered sums over a few layers were seen to move outputs by up to ~7e-6 of
their scale (LeViT on an AMD EPYC, AVX2 without AVX-512), so this leaves a 10x margin, while a wrong
weight of the perturbed models moves them by more than 1e-2 of their scale."""

BF16_TOLERANCE = 5e-2
"""bfloat16 autocast may move an eval-mode output by this fraction of the largest fp32 output."""


@torch.no_grad()
def assert_bf16_close(model: nn.Module, x: object, shape: tuple[int, ...] | None = None) -> None:
    """Under CPU bfloat16 autocast ``model(x)`` (eval mode) comes out in bfloat16 (autocast reached it) and
    within :data:`BF16_TOLERANCE` of the largest fp32 output of the fp32 result; ``shape``: the one expected."""
    full = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(x)
    assert half.dtype == torch.bfloat16 and half.shape == full.shape, (half.dtype, half.shape, full.shape)
    assert shape is None or tuple(full.shape) == shape, (full.shape, shape)
    torch.testing.assert_close(half.float(), full, atol=BF16_TOLERANCE * full.abs().max().item(), rtol=0)


VARIANCE_BUFFERS = ("running_var",)
"""Buffer names that must stay positive: they are scaled instead of shifted."""


@torch.no_grad()
def perturb(module: nn.Module, scale: float = 0.1, seed: int = 1234, constants: tuple[str, ...] = ()) -> nn.Module:
    """Move every parameter and every floating-point buffer of the state dict off its value, in place.

    Parameters and buffers get ``+ scale * N(0, 1)`` noise; variance buffers (BatchNorm's
    ``running_var``) are multiplied by ``exp(scale * N(0, 1))`` so they stay positive.  Integer
    buffers (``num_batches_tracked``) and non-persistent buffers (recomputed tables, never
    imported) are left alone, and so are buffers whose last name is in ``constants``: fixed by the
    reference's construction, never trained (vit-pytorch's bias-free LayerNorm keeps a zero
    ``beta`` buffer).  Seeded on its own generator, so a test's other draws are unchanged.
    Returns ``module``.
    """
    generator = torch.Generator().manual_seed(seed)

    def noise(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device) * scale

    for param in module.parameters():
        param.add_(noise(param))
    persistent = set(module.state_dict())
    for name, buffer in module.named_buffers():
        if name not in persistent or not buffer.is_floating_point() or name.rsplit(".", 1)[-1] in constants:
            continue
        if name.rsplit(".", 1)[-1] in VARIANCE_BUFFERS:
            buffer.mul_(noise(buffer).exp())
        else:
            buffer.add_(noise(buffer))
    return module


def _tensors(value: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors of an output: itself, or those of a (nested) tuple or list of outputs."""
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for item in value for t in _tensors(item)]


def assert_float64_close(
    actual: torch.Tensor | Sequence[torch.Tensor], expected: torch.Tensor | Sequence[torch.Tensor]
) -> None:
    """Parity of two float64 outputs (tensors or tuples of them) within :data:`FLOAT64_TOLERANCE`, absolute
    and relative.

    Refuses an output that is not float64: a model left in float32 (or a table it casts to float32) would
    otherwise pass only on the processor the tolerance was tuned on."""
    for name, value in (("actual", actual), ("expected", expected)):
        dtypes = {t.dtype for t in _tensors(value)}
        assert dtypes == {torch.float64}, f"{name} output is {sorted(map(str, dtypes))}, expected torch.float64"
    torch.testing.assert_close(actual, expected, atol=FLOAT64_TOLERANCE, rtol=FLOAT64_TOLERANCE)


def assert_float32_close(
    actual: torch.Tensor | Sequence[torch.Tensor], expected: torch.Tensor | Sequence[torch.Tensor]
) -> None:
    """The float32 check: every output within :data:`FLOAT32_TOLERANCE` of the largest ``expected`` output."""
    expected_tensors = _tensors(expected)
    assert all(t.dtype == torch.float32 for t in _tensors(actual) + expected_tensors), "expected float32 outputs"
    scale = max(t.abs().max().item() for t in expected_tensors)
    torch.testing.assert_close(actual, expected, atol=FLOAT32_TOLERANCE * scale, rtol=0)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Run a block with ``dtype`` as torch's default floating-point type (restored after it): for a reference
    that allocates tensors in the default type inside ``forward`` (``torch.zeros(...)`` with no dtype), which
    ``.double()`` does not reach."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


FIXED_TABLE_ROUNDING = 1e-5
"""A reference's fixed positional table may differ from ours by this much: float32 rounding of angles up to the
table's length (each ~1e-7 of the angle), against the O(1) of a swapped axis or a sin for a cos."""


@torch.no_grad()
def share_fixed_table(reference: nn.Module, name: str, table: torch.Tensor) -> None:
    """Put our fixed positional ``table`` into ``reference`` at ``name`` (a dotted parameter, buffer or plain
    tensor attribute), after checking that the reference's own table agrees with it to float32 rounding.

    vit-pytorch computes its fixed sine tables in float32; ours are computed in float64, then rounded to float32.
    The two differ by float32 rounding (~1e-7), which moves float64 outputs by ~1e-9: the float64 comparison
    runs both models on ours (float32 values, so exact in any dtype) and this check covers the tables."""
    owner_name, _, attribute = name.rpartition(".")
    current = getattr(reference.get_submodule(owner_name), attribute)
    ours = table.reshape(current.shape)
    torch.testing.assert_close(current.double(), ours.double(), atol=FIXED_TABLE_ROUNDING, rtol=0)
    current.data = ours.to(current.dtype)


def without_qk_norm_eps(model: nn.Module) -> nn.Module:
    """``model`` with the eps of its query and key RMSNorms (:class:`~vit_core.layers.HeadNorm`) set to 0.

    vit-pytorch's NaViT normalises queries and keys with ``F.normalize`` (no eps under the root); ours adds
    ``eps=1e-6``, which moves outputs by ~1e-6 of their scale (tests/test_parity.py pins that difference).
    Float64 parity with that reference compares the rest."""
    for module in model.modules():
        if isinstance(module, HeadNorm):
            module.eps = 0.0
    return model
