"""The learning-rate schedule of ``vit train``: linear warm-up, then cosine decay to ``--min-lr``, set per step
(so a resumed run continues the same curve), and DeiT's scaling of ``--lr-base`` with the global batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vit_core.training.config import TrainError

LR_BASE_BATCH = 512
"""``--lr-base`` is the rate of a global batch of this many images (DeiT: ``lr = lr_base * batch / 512``)."""


@dataclass(frozen=True)
class Schedule:
    """``lr`` reached linearly over the first ``warmup`` of ``total`` steps, then cosine decay to ``min_lr``."""

    total: int
    warmup: int
    lr: float
    min_lr: float = 0.0

    def at(self, step: int) -> float:
        """The learning rate of the step that starts after ``step`` steps (``0 <= step < total``)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(total: int, steps_per_epoch: int, fraction: float, epochs: float | None) -> int:
    """Warm-up steps: ``epochs`` epochs when given (``--warmup-epochs``), else ``fraction`` of the steps."""
    if epochs is not None:
        if epochs < 0:
            raise TrainError(f"--warmup-epochs must be at least 0, got {epochs}")
        return min(total, round(epochs * steps_per_epoch))
    if not 0.0 <= fraction < 1.0:
        raise TrainError(f"--warmup must be a fraction of the steps in [0, 1), got {fraction}")
    return max(1, round(fraction * total)) if fraction > 0 else 0


def peak_lr(lr: float, lr_base: float | None, global_batch: int) -> float:
    """The peak learning rate: ``lr_base * global_batch / 512`` with ``--lr-base``, else ``lr``."""
    for option, value in (("--lr", lr), ("--lr-base", lr_base)):
        if value is not None and not value > 0:
            raise TrainError(f"{option} must be positive, got {value}")
    return lr if lr_base is None else lr_base * global_batch / LR_BASE_BATCH
