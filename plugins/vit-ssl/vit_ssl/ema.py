"""The exponential-moving-average teacher of self-distillation (BYOL arXiv 2006.07733, DINO 2104.14294).

Done the way the maintained SSL libraries settled on: the teacher is a frozen copy (no gradients,
always in eval mode, so dropout and stochastic depth never touch its targets), it moves after the
optimizer step (``update``), the move covers buffers too (BatchNorm statistics follow the student;
integer buffers are copied), it runs as a handful of ``torch._foreach`` kernels instead of one
Python step per tensor, and the momentum may follow DINO's cosine schedule from its base value
to 1 over training.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


def check_decay(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a float in [0, 1], got {value!r}")
    return float(value)


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """DINO's teacher momentum: ``final - (final - base) * (1 + cos(pi * step / total_steps)) / 2``,
    from ``base`` at step 0 to ``final`` at ``total_steps`` (and ``final`` after)."""
    progress = min(step, total_steps) / total_steps
    return final - (final - base) * (1 + math.cos(math.pi * progress)) / 2


class EMATeacher(nn.Module):
    """A frozen copy of ``student`` that :meth:`update` moves towards it: ``t = m t + (1 - m) s``.

    Args:
        student: the module to follow (copied once, at construction).
        decay: the momentum ``m`` (``moving_average_decay``); the base value when scheduled.
        total_steps: with a value, ``m`` follows :func:`cosine_momentum` from ``decay`` to
            ``final_decay`` over that many updates; ``None`` keeps it constant.
        final_decay: the momentum reached at ``total_steps``.
    """

    def __init__(
        self, student: nn.Module, decay: float, *, total_steps: int | None = None, final_decay: float = 1.0
    ) -> None:
        super().__init__()
        self.decay = check_decay("moving_average_decay", decay)
        self.final_decay = check_decay("final_decay", final_decay)
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)):
            raise TypeError(f"total_steps must be an int or None, got {total_steps!r}")
        if total_steps is not None and total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps!r}")
        self.total_steps = total_steps
        self.module = copy.deepcopy(student).requires_grad_(False).eval()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.num_updates = 0  # ``steps`` on the host: the schedule reads it without a device sync
        self.register_load_state_dict_post_hook(_read_steps)

    def train(self, mode: bool = True) -> EMATeacher:
        """The teacher stays in eval mode whatever the trainer's mode."""
        return super().train(False)

    @property
    def momentum(self) -> float:
        """The momentum the next :meth:`update` uses."""
        if self.total_steps is None:
            return self.decay
        return cosine_momentum(self.num_updates, self.total_steps, self.decay, self.final_decay)

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        with torch.no_grad():
            return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """Move every parameter and floating-point buffer towards ``student``'s; copy the others."""
        weight = 1.0 - self.momentum
        ours = list(self.module.parameters())
        theirs = list(student.parameters())
        _check_alike(ours, theirs, "parameters")
        _lerp(ours, [t.detach() for t in theirs], weight)
        our_buffers, their_buffers = list(self.module.buffers()), list(student.buffers())
        _check_alike(our_buffers, their_buffers, "buffers")
        floating = [(a, b) for a, b in zip(our_buffers, their_buffers) if a.is_floating_point()]
        _lerp([a for a, _ in floating], [b for _, b in floating], weight)
        for a, b in zip(our_buffers, their_buffers):
            if not a.is_floating_point():
                a.copy_(b)
        self.steps += 1
        self.num_updates += 1


def _read_steps(module: EMATeacher, _incompatible: object) -> None:
    """After ``load_state_dict``: the host copy of the loaded ``steps`` (read once, not per update)."""
    module.num_updates = int(module.steps)


def _check_alike(ours: list[Tensor], theirs: list[Tensor], what: str) -> None:
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
        raise ValueError(f"the student's {what} no longer match the teacher's (was the student changed after copying?)")


def _lerp(ours: list[Tensor], theirs: list[Tensor], weight: float) -> None:
    """``ours += weight * (theirs - ours)``, one foreach kernel per (device, dtype) group."""
    if not ours or weight == 0.0:
        return
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
    for a, b in zip(ours, theirs):
        mine, other = groups.setdefault((a.device, a.dtype), ([], []))
        mine.append(a)
        other.append(b.to(device=a.device, dtype=a.dtype))
    for mine, other in groups.values():
        torch._foreach_lerp_(mine, other, weight)
