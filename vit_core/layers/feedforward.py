"""The transformer's position-wise MLP (Vaswani et al., arXiv 1706.03762), plain or gated (SwiGLU,
Shazeer, arXiv 2002.05202), and the activations pretrained ViTs use, by name."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from vit_core.validation import check_choice, check_positive_int, check_probability

Activation = Callable[[], nn.Module]


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation OpenAI's CLIP was trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Activation] = {
    "gelu": nn.GELU,
    "gelu_tanh": functools.partial(nn.GELU, approximate="tanh"),
    "quick_gelu": QuickGELU,
    "swiglu": nn.SiLU,
}
"""The MLP activations a model takes by name (``activation="gelu"``): exact GELU (ViT, DeiT, DINOv2), its tanh
approximation (SigLIP), QuickGELU (OpenAI CLIP) and SwiGLU (DINOv2-giant; a gated MLP, see :data:`GATED`)."""

GATED = frozenset({"swiglu"})
"""The :data:`ACTIVATIONS` that gate: the MLP's first layer is twice as wide and ``act(first half) * second half``."""


def activation_by_name(name: str) -> tuple[Activation, bool]:
    """The factory of the activation ``name`` (one of :data:`ACTIVATIONS`) and whether its MLP is gated."""
    check_choice("activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name], name in GATED


class FeedForward(nn.Module):
    """``Linear(dim, hidden_dim) -> activation -> Dropout -> Linear(hidden_dim, dim) -> Dropout``.

    ``activation`` builds the non-linearity (a module class such as ``nn.GELU``, the default, or
    ``nn.SiLU`` as MobileViT uses, or any zero-argument factory).  ``gated=True`` makes it a gated
    linear unit (SwiGLU with ``nn.SiLU``): ``fc1`` maps to ``2 * hidden_dim`` and the activation of
    the first half multiplies the second half (timm's ``GluMlp``, DINOv2's ``SwiGLUFFN``).
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        dropout: float = 0.0,
        *,
        bias: bool = True,
        activation: Activation = nn.GELU,
        gated: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("mlp_dim", hidden_dim)
        check_probability("dropout", dropout)
        if not callable(activation):
            raise TypeError(f"activation must be a module class or factory such as nn.GELU, got {activation!r}")
        if not isinstance(gated, bool):
            raise TypeError(f"gated must be a bool, got {gated!r}")
        self.gated = gated
        self.fc1 = nn.Linear(dim, 2 * hidden_dim if gated else hidden_dim, bias=bias)
        self.act = activation()
        if not isinstance(self.act, nn.Module):
            raise TypeError(f"activation() must return an nn.Module, got {type(self.act).__name__}")
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.fc1(x)
        if self.gated:
            gate, value = hidden.chunk(2, dim=-1)
            hidden = self.act(gate) * value
        else:
            hidden = self.act(hidden)
        return self.drop2(self.fc2(self.drop1(hidden)))
