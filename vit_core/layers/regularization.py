"""Residual-branch regularisers: stochastic depth (Huang et al., arXiv 1603.09382) and LayerScale
(Touvron et al., CaiT, arXiv 2103.17239)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_core.validation import check_probability


class DropPath(nn.Module):
    """Zero the whole branch for a random share ``prob`` of the samples, rescaling the rest."""

    def __init__(self, prob: float, name: str = "stochastic_depth_rate") -> None:
        super().__init__()
        self.prob = check_probability(name, prob)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.prob == 0.0:
            return x
        keep = 1.0 - self.prob
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) < keep
        return x * mask.to(x.dtype) / keep


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth probabilities rising linearly from 0 at the first layer to ``rate`` at the last."""
    check_probability("drop_path_rate", rate)
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


class LayerScale(nn.Module):
    """A learned per-channel gain on a residual branch, initialised to ``init_value`` (CaiT's LayerScale)."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        if isinstance(init_value, bool) or not isinstance(init_value, (int, float)) or not init_value > 0:
            raise ValueError(f"layer_scale must be a positive float (the initial gain), got {init_value!r}")
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma
