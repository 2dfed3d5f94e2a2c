"""Stochastic depth (Huang et al., arXiv 1603.09382): drop a residual branch per sample while training."""

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
