"""One optimizer step of ``vit train``: the per-rank batch in ``--accum-steps`` micro-batches whose gradients add
up (each micro-batch's mean loss weighted by its share; DDP synchronises on the last only), the gradient
unscaled (fp16) and clipped, the optimizer and scaler stepped, the gradients cleared.

The loss stays on the device: :class:`RunningLoss` sums it without waiting for the device, and is read on
log steps only; a non-finite loss is remembered with its step, and the loop stops there naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.training.config import TrainError
from vit_core.training.precision import Precision

LossFn = Callable[[Any, Tensor], Tensor]
"""``loss(inputs, targets)`` of one micro-batch: the mean over its samples."""


def micro_batches(size: int, accum_steps: int) -> list[slice]:
    """``accum_steps`` contiguous slices of a batch of ``size`` (the last ones shorter, none empty)."""
    if isinstance(accum_steps, bool) or not isinstance(accum_steps, int) or accum_steps < 1:
        raise TrainError(f"--accum-steps must be a positive int (micro-batches per optimizer step), got {accum_steps}")
    chunk = -(-size // accum_steps)
    return [slice(start, min(size, start + chunk)) for start in range(0, size, chunk)]


class TrainStep:
    """The optimizer step of ``model`` (``module`` inside any DDP/compile wrapper) over ``params``."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        params: list[nn.Parameter],
        *,
        clip: float = 0.0,
        accum_steps: int = 1,
    ) -> None:
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.params, self.clip, self.accum_steps = params, clip, accum_steps

    def _no_sync(self, last: bool) -> Any:
        if last or not isinstance(self.model, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()  # one process, FSDP2 (which reduces as each micro-batch ends)
        return self.model.no_sync()

    def __call__(self, inputs: Tensor, targets: Tensor, loss_fn: LossFn) -> Tensor:
        """Run the step on one per-rank batch; returns its mean loss, detached, on the device."""
        size = len(targets)
        parts = micro_batches(size, self.accum_steps)
        total = torch.zeros((), device=targets.device)
        scaler = self.precision.scaler
        for i, part in enumerate(parts):
            with self._no_sync(i == len(parts) - 1):
                with self.precision.autocast():
                    loss = loss_fn(inputs[part], targets[part])
                weighted = loss.float() * ((part.stop - part.start) / size)
                (scaler.scale(weighted) if scaler is not None else weighted).backward()
            total += weighted.detach()
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        if self.clip > 0:
            nn.utils.clip_grad_norm_(self.params, self.clip)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total


class RunningLoss:
    """The losses of the steps since the last read, summed on the device, and the first non-finite one's step."""

    def __init__(self, device: torch.device) -> None:
        self.sum = torch.zeros((), device=device)
        self.count = 0
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.last = float("nan")

    def add(self, loss: Tensor, step: int) -> None:
        """Add the loss of step ``step`` (1-based) without waiting for the device."""
        self.sum += loss
        self.count += 1
        first_bad = (~torch.isfinite(loss)) & (self.bad_step < 0)
        self.bad_step = torch.where(first_bad, torch.full_like(self.bad_step, step), self.bad_step)

    def read(self) -> float:
        """The mean loss since the last read (waits for the device); raises :class:`TrainError` naming the
        first step whose loss was not finite."""
        bad = int(self.bad_step)
        if bad >= 0:
            raise TrainError(
                f"the loss is not finite at step {bad}; the last good checkpoint is kept (lower --lr, raise --warmup, "
                "or check the data)"
            )
        if self.count:
            self.last = float(self.sum) / self.count
            self.sum.zero_()
            self.count = 0
        return self.last
