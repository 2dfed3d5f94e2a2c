"""DINO's projection head (Caron et al., arXiv 2104.14294, section 3.1 and appendix).

An MLP with GELUs (``projection_layers - 1`` linear layers: ``dim -> hidden -> ... -> bottleneck``),
then L2 normalisation and a weight-normalised linear layer to ``K`` outputs with its norm fixed
to 1 (the paper's ``norm_last_layer``): each output is the cosine similarity of the embedding with
one of ``K`` learned prototypes.  The README's ``projection_layers=4`` is the paper's 3-layer MLP
plus that last layer.

vit-pytorch's head has GELU after every hidden layer, L2 normalisation, then a plain linear layer
from ``projection_hidden_size`` to ``K`` (no bottleneck, no weight normalisation).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.validation import check_positive_int


class ProjectionHead(nn.Module):
    def __init__(self, dim: int, num_classes_K: int, *, hidden_dim: int, num_layers: int, bottleneck_dim: int) -> None:
        super().__init__()
        check_positive_int("num_classes_K", num_classes_K)
        check_positive_int("projection_hidden_size", hidden_dim)
        check_positive_int("bottleneck_dim", bottleneck_dim)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 2:
            raise ValueError(f"projection_layers must be an int >= 2 (MLP layers plus the last), got {num_layers!r}")
        widths = [dim, *([hidden_dim] * (num_layers - 2)), bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.prototypes = nn.Parameter(nn.init.trunc_normal_(torch.empty(num_classes_K, bottleneck_dim), std=0.02))
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        return z @ F.normalize(self.prototypes, dim=-1).to(z.dtype).T
