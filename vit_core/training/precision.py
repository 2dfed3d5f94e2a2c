"""``--precision fp32|bf16|fp16``: the forward pass under autocast, master weights and optimizer state in
float32 (checkpoints too).  fp16 needs CUDA and scales the loss (``torch.amp.GradScaler``) so small gradients
do not flush to zero; bf16 runs on CPU and CUDA without scaling."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from vit_core.training.config import TrainError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``--precision`` choices and their autocast dtypes (``None``: no autocast)."""


@dataclass
class Precision:
    """The autocast of the forward pass and, for fp16, the gradient scaler."""

    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None = field(default=None)

    @classmethod
    def of(cls, name: str, device: torch.device) -> Precision:
        """``--precision name`` on ``device``, refused where it cannot run (fp16 off CUDA)."""
        if name not in PRECISIONS:
            raise TrainError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
        if name == "fp16" and device.type != "cuda":
            raise TrainError(
                f"--precision fp16 needs a CUDA device (its gradient scaler and fast kernels are CUDA's); this run is "
                f"on {device}: use --precision bf16 (autocast on CPU) or fp32"
            )
        scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
        return cls(name, device, scaler)

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward pass's autocast (nothing for fp32)."""
        dtype = PRECISIONS[self.name]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state as plain JSON values (empty without a scaler)."""
        if self.scaler is None:
            return {}
        return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in self.scaler.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scaler saved by :meth:`state_dict`."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
