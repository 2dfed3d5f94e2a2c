"""Efficient-attention trunks from other packages, built by name for ``vit_core.ViT(transformer=...)``.

vit-pytorch's README plugs any ``(batch, tokens, dim) -> (batch, tokens, dim)`` encoder into a ViT;
these factories build two of them from the arguments a ViT already has (``dim``, ``depth``,
``heads``, ``dim_head``, ``mlp_dim``, ``dropout``) plus each backend's own options, check every
argument first, and return the third-party module behind vit-core's input checks
(:class:`CheckedTrunk`; its ``trunk`` is the package's module, state dict and all):

* ``nystrom``: ``nystrom_attention.Nystromformer`` (Xiong et al., arXiv 2102.03902): attention
  through ``num_landmarks`` segment-mean landmarks and an iterative Moore-Penrose pseudo-inverse,
  linear in the number of tokens;
* ``x-transformers``: ``x_transformers.Encoder``, dense attention with the package's catalogue of
  improvements (GLU feed-forward, residual attention, rotary positions, ...) as keyword options.

The packages are imported only when a backend is built; a missing one raises
:class:`MissingBackendError` with the ``pip install`` line that fixes it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.validation import check_odd_kernel, check_positive_int, check_probability


@dataclass(frozen=True)
class BackendPackage:
    """The import name and the distribution (what ``pip install`` takes) of a backend's package."""

    module: str
    distribution: str


PACKAGES = {
    "nystrom": BackendPackage("nystrom_attention", "nystrom-attention"),
    "x-transformers": BackendPackage("x_transformers", "x-transformers"),
}
"""The package each backend is built from."""


class MissingBackendError(ImportError):
    """A backend's package is not installed; the message names the distribution to install."""


def import_backend(backend: str) -> ModuleType:
    """Import the package of ``backend`` (a key of :data:`PACKAGES`) or say how to install it."""
    package = PACKAGES[backend]
    try:
        return importlib.import_module(package.module)
    except ImportError as exc:
        raise MissingBackendError(
            f"the {backend!r} backend needs the {package.distribution} package, which does not import "
            f"({exc}); install it with `pip install {package.distribution}`",
            name=package.module,
        ) from exc


class CheckedTrunk(nn.Module):
    """A third-party trunk behind vit-core's input checks: ``(batch, tokens, dim)`` in, the same shape out.

    ``trunk`` is the package's module; ``dim`` its width (what ``vit_core.ViT`` checks against its
    own); ``backend`` the registered name it was built under.  ``mask`` (``(batch, tokens)``,
    ``True`` = a real token) is handed to the trunk when given.  State dicts load in either layout:
    this module's (``trunk.`` in front) or the bare package module's, as vit-pytorch's
    ``efficient.ViT`` saves it (so ``vit_core.load_reference_weights`` needs no importer of its own).
    """

    def __init__(self, trunk: nn.Module, dim: int, backend: str) -> None:
        super().__init__()
        self.trunk = trunk
        self.dim = check_positive_int("dim", dim)
        self.backend = backend
        self.register_load_state_dict_pre_hook(_accept_bare_trunk_keys)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"the {self.backend!r} backend takes x of shape (batch, tokens, dim={self.dim}), got {shape}"
            )
        if mask is None:
            return self.trunk(x)
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(
                f"mask must be a boolean (batch, tokens)={tuple(x.shape[:2])} tensor (True = a real token), "
                f"got {mask.dtype if isinstance(mask, Tensor) else type(mask).__name__} "
                f"{tuple(mask.shape) if isinstance(mask, Tensor) else ''}"
            )
        return self.trunk(x, mask=mask)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}, dim={self.dim}"


def _accept_bare_trunk_keys(module: nn.Module, state: dict[str, Tensor], prefix: str, *_: Any) -> None:
    """Move keys of the bare package module (``prefix + "layers..."``) under ``prefix + "trunk."``."""
    own = prefix + "trunk."
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(own)]:
        state[own + key[len(prefix) :]] = state.pop(key)


def _check_trunk(dim: int, depth: int, heads: int, dim_head: int, dropout: float) -> None:
    check_positive_int("dim", dim)
    check_positive_int("depth", depth)
    check_positive_int("heads", heads)
    check_positive_int("dim_head", dim_head)
    check_probability("dropout", dropout)


def nystromformer(
    *,
    dim: int,
    depth: int,
    heads: int = 8,
    dim_head: int = 64,
    mlp_dim: int | None = None,
    dropout: float = 0.0,
    num_landmarks: int = 256,
    pinv_iterations: int = 6,
    residual: bool = True,
    residual_conv_kernel: int = 33,
) -> CheckedTrunk:
    """``nystrom_attention.Nystromformer`` (arXiv 2102.03902) of width ``dim``.

    Args:
        dim, depth, heads, dim_head, dropout: as in ViT (``dropout`` on the attention output and
            in the MLP).
        mlp_dim: the MLP's hidden width, a multiple of ``dim`` (the package's MLP takes an integer
            multiplier); ``None``: ``4 * dim``, the package's default.
        num_landmarks: landmarks per head; sequences are zero-padded at the front to a multiple of it.
        pinv_iterations: Newton-Schulz iterations of the pseudo-inverse.
        residual: add a depth-wise convolution of the values along the tokens (the paper's skip).
        residual_conv_kernel: that convolution's length (odd, so the token count is kept).
    """
    _check_trunk(dim, depth, heads, dim_head, dropout)
    mlp_dim = 4 * dim if mlp_dim is None else check_positive_int("mlp_dim", mlp_dim)
    if mlp_dim % dim:
        raise ValueError(
            f"the 'nystrom' backend's MLP width is a multiple of dim={dim} (an integer multiplier), "
            f"got mlp_dim={mlp_dim}"
        )
    check_positive_int("num_landmarks", num_landmarks)
    check_positive_int("pinv_iterations", pinv_iterations)
    if not isinstance(residual, bool):
        raise TypeError(f"residual must be a bool, got {residual!r}")
    check_odd_kernel("residual_conv_kernel", residual_conv_kernel)
    package = import_backend("nystrom")
    trunk = package.Nystromformer(
        dim=dim,
        depth=depth,
        heads=heads,
        dim_head=dim_head,
        num_landmarks=num_landmarks,
        pinv_iterations=pinv_iterations,
        attn_values_residual=residual,
        attn_values_residual_conv_kernel=residual_conv_kernel,
        attn_dropout=dropout,
        ff_dropout=dropout,
    )
    if mlp_dim != 4 * dim:
        for _, feed_forward in trunk.layers:  # (attention, MLP) pairs, each pre-normed
            feed_forward.fn = type(feed_forward.fn)(dim=dim, mult=mlp_dim // dim, dropout=dropout)
    return CheckedTrunk(trunk, dim, "nystrom")


_ENCODER_OWN = ("dim", "depth", "heads", "attn_dim_head", "ff_mult", "attn_dropout", "ff_dropout")
"""Encoder arguments set from the ViT-style ones; passing them as options would be ambiguous."""


def x_transformers_encoder(
    *,
    dim: int,
    depth: int,
    heads: int = 8,
    dim_head: int = 64,
    mlp_dim: int | None = None,
    dropout: float = 0.0,
    **options: Any,
) -> CheckedTrunk:
    """``x_transformers.Encoder`` of width ``dim`` (pre-norm, ends with a norm).

    Args:
        dim, depth, heads, dim_head, dropout: as in ViT (``dropout`` on the attention weights and
            in the MLP).
        mlp_dim: the MLP's hidden width (``4 * dim`` when ``None``).
        options: any other ``Encoder`` keyword, e.g. ``ff_glu=True`` (arXiv 2002.05202),
            ``residual_attn=True`` (arXiv 2012.11747), ``rotary_pos_emb=True``.
    """
    _check_trunk(dim, depth, heads, dim_head, dropout)
    mlp_dim = 4 * dim if mlp_dim is None else check_positive_int("mlp_dim", mlp_dim)
    clashes = sorted(set(options) & set(_ENCODER_OWN))
    if clashes:
        raise ValueError(
            f"the 'x-transformers' backend sets {', '.join(clashes)} from dim, depth, heads, dim_head, mlp_dim "
            "and dropout; pass those instead"
        )
    mult = mlp_dim / dim
    if int(dim * mult) != mlp_dim:
        raise ValueError(f"mlp_dim={mlp_dim} is not representable as dim * ff_mult for dim={dim}")
    package = import_backend("x-transformers")
    try:
        trunk = package.Encoder(
            dim=dim,
            depth=depth,
            heads=heads,
            attn_dim_head=dim_head,
            ff_mult=mult,
            attn_dropout=dropout,
            ff_dropout=dropout,
            **options,
        )
    except (AssertionError, TypeError) as exc:
        raise ValueError(f"x_transformers.Encoder rejected the options {sorted(options)}: {exc}") from exc
    return CheckedTrunk(trunk, dim, "x-transformers")
