"""Shared test helpers.

:func:`perturb` is the first step of every parity test: at a reference's initial weights every
norm gain is 1 and every norm bias (and many zero-initialised tensors) 0, so a norm in the wrong
place, a dropped bias or a mis-broadcast per-head gain all give the same output as the right
model.  Moving every parameter and buffer off its initial value first makes them visible.
"""

from __future__ import annotations

import torch
from torch import nn

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
