"""What ``vit train`` takes (:class:`TrainConfig`) and the error of a request that cannot run (:class:`TrainError`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TrainError(ValueError):
    """A training request that cannot run: the message says what to change."""


@dataclass
class TrainConfig:
    """Everything ``vit train`` takes; ``overrides`` are ``--set`` pairs (``encoder.dim`` for a component)."""

    name: str
    encoder: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str | None = None  # None: digits, or on --resume the checkpoint's
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    label_smoothing: float = 0.0
    clip: float = 1.0
    seed: int = 0
    max_steps: int | None = None
    out: Path | None = None
    resume: Path | None = None
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    log_every: int = 10
