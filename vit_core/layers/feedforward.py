"""The transformer's position-wise MLP (Vaswani et al., arXiv 1706.03762)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from vit_core.validation import check_positive_int, check_probability

Activation = Callable[[], nn.Module]


class FeedForward(nn.Module):
    """``Linear(dim, hidden_dim) -> activation -> Dropout -> Linear(hidden_dim, dim) -> Dropout``.

    ``activation`` builds the non-linearity (a module class such as ``nn.GELU``, the default, or
    ``nn.SiLU`` as MobileViT uses, or any zero-argument factory).
    """

    def __init__(
        self, dim: int, hidden_dim: int, dropout: float = 0.0, *, bias: bool = True, activation: Activation = nn.GELU
    ) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("mlp_dim", hidden_dim)
        check_probability("dropout", dropout)
        if not callable(activation):
            raise TypeError(f"activation must be a module class or factory such as nn.GELU, got {activation!r}")
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = activation()
        if not isinstance(self.act, nn.Module):
            raise TypeError(f"activation() must return an nn.Module, got {type(self.act).__name__}")
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
