"""The transformer's position-wise MLP (Vaswani et al., arXiv 1706.03762)."""

from __future__ import annotations

from torch import Tensor, nn

from vit_core.validation import check_positive_int, check_probability


class FeedForward(nn.Module):
    """``Linear(dim, hidden_dim) -> GELU -> Dropout -> Linear(hidden_dim, dim) -> Dropout``."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, *, bias: bool = True) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("mlp_dim", hidden_dim)
        check_probability("dropout", dropout)
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
