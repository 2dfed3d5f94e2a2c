"""What every check shares: the entry under test (:class:`Subject`), the error a failed check raises
(:class:`ConformanceError`), and building and running the entry with messages that name the check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from vit_core.registry import ModelInfo, Registry, create_model, get_registry, list_models

GRADIENT_PASSES = 3
"""Training-mode backward passes whose gradients the ``gradients`` checks accumulate: stochastic depth
or layer drop may skip a branch for a whole small batch in one pass, never (in practice) in all."""


class ConformanceError(AssertionError):
    """A model (or plugin, per ``kind``) failed one conformance check; ``model`` and ``check`` name them."""

    def __init__(self, model: str, check: str, message: str, kind: str = "model") -> None:
        self.model, self.check = model, check
        super().__init__(f"{kind} {model!r} failed conformance check {check!r}: {message}")


@dataclass
class Subject:
    """The model under test: its metadata and how to build it (through a given registry or the global API)."""

    info: ModelInfo
    registry: Registry | None = None
    batch: int = 2

    @property
    def active_registry(self) -> Registry:
        """The registry the entry is built through: the given one, else the process-wide one."""
        return self.registry if self.registry is not None else get_registry()

    @property
    def key(self) -> str:
        """The name to build it by: bare, or ``"plugin:name"`` when another plugin claims the bare name too."""
        return self.active_registry.key(self.info)

    def create(self, **overrides: Any) -> nn.Module:
        """The entry built from its default configuration updated with ``overrides``."""
        if self.registry is not None:
            return self.registry.create(self.key, **overrides)
        return create_model(self.key, **overrides)

    def create_with_parts(self, **overrides: Any) -> tuple[nn.Module, dict[str, nn.Module]]:
        """A trainer and the components the registry built for it."""
        return self.active_registry.create_with_parts(self.key, **overrides)

    def listed(self, pattern: str) -> list[str]:
        """The names ``list_models(pattern)`` returns (of the given registry, when there is one)."""
        if self.registry is not None:
            return [self.registry.key(i) for i in self.registry.list(pattern)]
        return list_models(pattern)

    def example(self) -> Any:
        """A random input of ``batch`` samples for the default configuration."""
        return self.info.example_input(self.batch)

    def fail(self, check: str, message: str) -> ConformanceError:
        """The error for a failed ``check`` of this entry (raise it)."""
        return ConformanceError(self.info.name, check, message, kind=self.info.kind)


def describe(exc: BaseException) -> str:
    """``"TypeError: message"``, for a check's message."""
    return f"{type(exc).__name__}: {exc}"


def shape_of(value: Any) -> str:
    """A tensor's shape as a tuple, or the type name of anything else, for a check's message."""
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def build(s: Subject, check: str, **overrides: Any) -> nn.Module:
    """The entry built for ``check``; building it failing fails the check, naming the configuration."""
    try:
        return s.create(**overrides)
    except Exception as exc:
        config = {**s.info.default_config, **overrides}
        raise s.fail(check, f"building {s.info.target} with {config} raised {describe(exc)}") from exc


def run_forward(s: Subject, check: str, model: nn.Module, x: Any) -> Tensor:
    """``model(x)``, which must return a tensor; an exception fails ``check`` naming the input's shape."""
    try:
        out = model(x)
    except Exception as exc:
        raise s.fail(check, f"forward on {s.info.input_kind} input {shape_of(x)} raised {describe(exc)}") from exc
    if not isinstance(out, Tensor):
        raise s.fail(check, f"forward returned {type(out).__name__}, expected a Tensor")
    return out


def expect_width(s: Subject, check: str, out: Tensor, width: int, what: str) -> None:
    """Fail ``check`` unless ``out`` is ``(batch, width)``."""
    expected = (s.batch, width)
    if tuple(out.shape) != expected:
        raise s.fail(check, f"{what}: expected output shape {expected} (batch, num_classes), got {tuple(out.shape)}")


def num_classes_of(s: Subject, check: str, model: nn.Module) -> int:
    """The model's int attribute ``num_classes`` (the VisionModel interface); its absence fails ``check``."""
    value = getattr(model, "num_classes", None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise s.fail(check, "the model has no int attribute num_classes (VisionModel interface)")
    return value


def shapes_of(x: Any) -> list[tuple[int, ...]]:
    """The shape of ``x``, or of every tensor in a list of them."""
    if isinstance(x, Tensor):
        return [tuple(x.shape)]
    return [tuple(t.shape) for t in x if isinstance(t, Tensor)] if isinstance(x, (list, tuple)) else []


def names_the_input(message: str, argument: str | None, x: Any) -> bool:
    """Whether an error message names the input argument (as a word) or a received shape (``(3, 32, 32)``
    or ``[3, 32, 32]``): "not enough values to unpack" does neither."""
    if argument and re.search(rf"(?<![\w.]){re.escape(argument)}(?!\w)", message):
        return True
    return any(str(shape) in message or str(list(shape)) in message for shape in shapes_of(x))
