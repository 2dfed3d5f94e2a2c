"""``--ema DECAY``: an exponential moving average of the trained weights, with timm's ``ModelEmaV3`` warm-up of
the decay (``min(DECAY, 1 - (1 + n) ** -2/3)`` at its ``n + 1``-th update, the first a copy), so early averages
follow the fast-moving weights.  Buffers (BatchNorm statistics) are copied, not averaged."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from vit_core.training.config import TrainError

WARMUP_POWER = 2 / 3
"""timm's ``ModelEmaV3`` default ``warmup_power`` (with ``warmup_gamma`` 1)."""


def check_decay(decay: float) -> float:
    """``--ema``'s decay, in ``[0, 1)``."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
        raise TrainError(f"--ema must be a decay in [0, 1) (e.g. 0.9998), got {decay}")
    return float(decay)


class ModelEma:
    """A frozen copy of ``module`` (eval mode) moved towards it after each optimizer step."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay, self.warmup, self.updates = check_decay(decay), warmup, 0
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.averaged = {name for name, p in self.module.named_parameters() if p.is_floating_point()}

    def decay_at(self, updates: int) -> float:
        """The decay of the ``updates``-th update (1-based): 0 (a copy) for the first, then warmed up."""
        step = updates - 1
        if step <= 0:
            return 0.0
        if not self.warmup:
            return self.decay
        return min(self.decay, 1.0 - (1.0 + step) ** -WARMUP_POWER)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards ``module``'s weights (the same architecture, unwrapped)."""
        self.updates += 1
        weight = 1.0 - self.decay_at(self.updates)
        for (name, ema), (_, value) in zip(self.module.state_dict().items(), module.state_dict().items()):
            if name in self.averaged:
                ema.lerp_(value.to(ema.dtype), weight)
            else:
                ema.copy_(value)

    def state(self) -> dict[str, Any]:
        """What :meth:`restore` needs beside the weights (JSON)."""
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates}

    def restore(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Put back the weights and update count saved with :meth:`state`."""
        missing = set(self.module.state_dict()) - set(weights)
        if missing:
            raise TrainError(f"--resume: the checkpoint's EMA weights lack {sorted(missing)[:3]}")
        self.module.load_state_dict(weights)
        self.updates = int(state.get("updates", 0))
