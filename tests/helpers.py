"""Shared test helpers.

:func:`perturb` is the first step of every parity test: at a reference's initial weights every
norm gain is 1 and every norm bias (and many zero-initialised tensors) 0, so a norm in the wrong
place, a dropped bias or a mis-broadcast per-head gain all give the same output as the right
model.  Moving every parameter and buffer off its initial value first makes them visible.
"""

from __future__ import annotations

import torch
from torch import nn

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
