"""Argument checks shared by every model: each error names the argument, the value and what was expected."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch


def as_tuple(name: str, value: int | Sequence[int], length: int = 2) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ``length`` positive ints (an int is repeated)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a tuple of {length} ints, got {value!r}")
    if isinstance(value, int):
        value = (value,) * length
    if not isinstance(value, (tuple, list)) or len(value) != length:
        raise TypeError(f"{name} must be an int or a tuple of {length} ints, got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return tuple(value)


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_odd_kernel(name: str, value: Any) -> int:
    """A positive odd convolution kernel: padded by ``value // 2``, it keeps the map's size."""
    if check_positive_int(name, value) % 2 == 0:
        raise ValueError(f"{name} must be odd (a same-size convolution, padded by kernel // 2), got {value!r}")
    return value


def check_positive_ints(**values: Any) -> None:
    """``check_positive_int`` on each keyword argument, named by its keyword."""
    for name, value in values.items():
        check_positive_int(name, value)


def check_non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def check_probability(name: str, value: Any, *, allow_one: bool = False) -> float:
    upper_ok = (lambda v: v <= 1.0) if allow_one else (lambda v: v < 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0.0 and upper_ok(value)):
        bound = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be a float in {bound}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    if value % divisor != 0:
        raise ValueError(f"{name}={value} must be divisible by {divisor_name}={divisor}")


def check_grid(size_name: str, size: Sequence[int], patch_name: str, patch: Sequence[int]) -> tuple[int, ...]:
    """Check every side of ``size`` divides by the matching side of ``patch``; return the patch grid."""
    for side, p in zip(size, patch):
        if side % p != 0:
            raise ValueError(f"{size_name} {tuple(size)} must be divisible by {patch_name} {tuple(patch)}")
    return tuple(side // p for side, p in zip(size, patch))


def check_tensor(
    name: str,
    x: Any,
    *,
    layout: str,
    spatial_dims: int = 2,
    batched: bool = True,
    channels: int | None = None,
    max_size: Sequence[int] | None = None,
    patch: Sequence[int] | None = None,
    size_name: str = "image_size",
    patch_name: str = "patch_size",
    channels_name: str = "channels",
) -> tuple[int, ...]:
    """Validate a ``([batch,] channels, *spatial)`` floating-point tensor; return its patch grid (its
    spatial size without ``patch``).

    ``layout`` describes the expected shape for the message, e.g. ``"(batch, channels, height, width)"``;
    ``size_name``, ``patch_name`` and ``channels_name`` are the model's own arguments for
    ``max_size``, ``patch`` and ``channels``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it first, "
            "e.g. x.float() / 255 for uint8 images"
        )
    ndim = spatial_dims + 1 + int(batched)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}, got shape {tuple(x.shape)}")
    channel_axis = int(batched)
    if channels is not None and x.shape[channel_axis] != channels:
        raise ValueError(
            f"{name} must have {channels_name}={channels} (axis {channel_axis} of {layout}), got shape {tuple(x.shape)}"
        )
    spatial = tuple(x.shape[channel_axis + 1 :])
    if max_size is not None and any(s > m for s, m in zip(spatial, max_size)):
        raise ValueError(
            f"{name} spatial size {spatial} is larger than {size_name} {tuple(max_size)}; "
            "inputs must be no larger than the size the model was built for"
        )
    if patch is not None:
        return check_grid(f"{name} spatial size", spatial, patch_name, patch)
    return spatial
