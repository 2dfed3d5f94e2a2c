"""Argument and input checks of the multi-stage models.

Per-stage arguments are an int (the same for every stage) or a tuple with one entry per stage;
a tuple of another length is an error naming the argument and the expected length.  Input images
must fit each model's stride and window arithmetic; one that does not gets an error naming the
side, the reason and the nearest sides that work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vit_core.validation import check_tensor

IMAGE_LAYOUT = "(batch, channels, height, width)"
SIDES = ("height", "width")

SideRule = Callable[[int, int], str | None]
"""``rule(side, axis) -> None`` when an input side of that axis (0 height, 1 width) fits, else the reason."""


def per_stage(
    name: str,
    value: Any,
    stages: int,
    *,
    check: Callable[[str, Any], Any] | None = None,
    allow_none: bool = False,
    of: str = "stage",
) -> tuple[Any, ...]:
    """``value`` as a tuple of ``stages`` entries: a tuple/list must have exactly that many, anything
    else is repeated.  ``check(name, item)`` validates each entry (``None`` passes when ``allow_none``)."""
    if isinstance(value, (tuple, list)):
        if len(value) != stages:
            raise ValueError(
                f"{name} must be a single value or a tuple of {stages} entries (one per {of}), "
                f"got {len(value)} entries: {tuple(value)!r}"
            )
        values = tuple(value)
    else:
        values = (value,) * stages
    if check is not None:
        for item in values:
            if not (allow_none and item is None):
                check(name, item)
    return values


def stage_count(name: str, value: Any, *, minimum: int = 1) -> tuple[int, ...]:
    """A tuple of per-stage depths (or dims) that itself fixes the number of stages."""
    if not isinstance(value, (tuple, list)) or len(value) < minimum:
        raise TypeError(f"{name} must be a tuple of ints, one per stage, got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ValueError(f"{name} must hold non-negative ints, got {tuple(value)!r}")
    return tuple(value)


def as_pair(name: str, value: Any) -> tuple[int, int]:
    """A size given as an int or an ``(height, width)`` pair of positive ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a (height, width) tuple, got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be an int or a (height, width) tuple, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value):
        raise ValueError(f"{name} must hold positive ints, got {tuple(value)!r}")
    return int(value[0]), int(value[1])


def conv_side(side: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution or pooling (may be zero or negative for sides too small)."""
    return (side + 2 * padding - kernel) // stride + 1


def nearest_sides(fits: Callable[[int], bool], side: int, limit: int | None = None) -> tuple[int | None, int | None]:
    """The largest side below and the smallest above ``side`` for which ``fits`` holds (``None``: none
    within ``limit``, four times ``side`` by default)."""
    limit = max(4 * side, 64) if limit is None else limit
    below = next((s for s in range(side - 1, 0, -1) if fits(s)), None)
    above = next((s for s in range(side + 1, limit + 1) if fits(s)), None)
    return below, above


def describe_nearest(below: int | None, above: int | None, what: str) -> str:
    options = [str(s) for s in (below, above) if s is not None]
    if not options:
        return f"no {what} near it works"
    return f"nearest {what} that work: {' and '.join(options)}"


def check_image(
    x: Any, *, channels: int, rule: SideRule, model: str, name: str = "img", channels_name: str = "channels"
) -> tuple[int, int]:
    """Validate a ``(batch, channels, height, width)`` tensor whose sides must satisfy ``rule``
    (``channels_name``: the model's argument holding ``channels``)."""
    height, width = check_tensor(name, x, layout=IMAGE_LAYOUT, channels=channels, channels_name=channels_name)
    for axis, side in enumerate((height, width)):
        reason = rule(side, axis)
        if reason is not None:
            below, above = nearest_sides(lambda s, a=axis: rule(s, a) is None, side)
            raise ValueError(
                f"{name} {SIDES[axis]} {side} does not fit {model}: {reason}; "
                f"{describe_nearest(below, above, SIDES[axis] + 's')} (input shape {tuple(x.shape)})"
            )
    return height, width


def exact_size(image_size: Sequence[int], what: str) -> SideRule:
    """A rule accepting only the sides of ``image_size`` (models whose position tables fix the size)."""

    def rule(side: int, axis: int) -> str | None:
        if side != image_size[axis]:
            return f"{what} fix the input to image_size {tuple(image_size)}"
        return None

    return rule
