"""Conformance kit: the checks every registered model must pass, first- or third-party.

A plugin's own test suite runs them on each of its models::

    from vit_core.testing import check_model, parametrize_models

    @parametrize_models(plugin="my-plugin")
    def test_conformance(model_name):
        check_model(model_name)

or all at once with ``check_plugin("my-plugin")``.  Each failed check raises a
:class:`ConformanceError` (an ``AssertionError``) whose message names the model and the check.
The checks, in order (see :data:`CHECKS`):

``metadata``     the ModelInfo is complete (citation and example included), its target imports, and
                 its default configuration only uses arguments of the constructor;
``listing``      the model is reachable through ``list_models`` and ``create_model``;
``forward``      the default configuration gives ``(batch, num_classes)`` on ``info.example_input``;
``interface``    ``forward == forward_head(forward_features)``, ``pre_logits`` gives
                 ``(batch, num_features)``, ``reset_classifier`` changes the output width;
``batch-independence``  in eval mode each example's output does not depend on the others in its
                 batch: ``model(x)[:1]`` equals ``model(x[:1])`` within ``1e-5``;
``num-params``   ``ModelInfo.num_params`` equals the built model's parameter count;
``gradients``    a backward pass of the output reaches every trainable parameter;
``bad-input``    wrong channels and wrong rank raise ``ValueError``/``TypeError`` whose message names the
                 input argument or the received shape, not a bare shape error;
``overrides``    ``create_model(name, num_classes=...)`` changes the output width.

The kit imports torch (it builds models); pytest is imported only by :func:`parametrize_models`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.registry import (
    ModelInfo,
    Registry,
    count_parameters,
    create_model,
    get_registry,
    list_models,
    resolve,
)

INTERFACE = ("forward_features", "forward_head", "reset_classifier")
DESCRIBED = ("citation", "example")


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

    def create(self, **overrides: Any) -> nn.Module:
        if self.registry is not None:
            return self.registry.create(self.info.name, **overrides)
        return create_model(self.info.name, **overrides)

    def listed(self, pattern: str) -> list[str]:
        if self.registry is not None:
            return [i.name for i in self.registry.list(pattern)]
        return list_models(pattern)

    def example(self) -> Any:
        return self.info.example_input(self.batch)

    def fail(self, check: str, message: str) -> ConformanceError:
        return ConformanceError(self.info.name, check, message)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def check_metadata(s: Subject) -> None:
    info = s.info
    try:
        dataclasses.replace(info)
    except Exception as exc:
        raise s.fail("metadata", _describe(exc)) from exc
    missing = [attr for attr in DESCRIBED if not str(getattr(info, attr)).strip()]
    if missing:
        raise s.fail("metadata", f"{' and '.join(missing)} must be filled in for `vit describe`")
    try:
        target = info.load_class()
    except Exception as exc:
        raise s.fail("metadata", f"target {info.target!r} does not import: {_describe(exc)}") from exc
    if not callable(target):
        raise s.fail("metadata", f"target {info.target!r} is not a class or factory")
    try:
        info.signature().bind_partial(**info.default_config)
    except (TypeError, ValueError) as exc:
        raise s.fail(
            "metadata",
            f"default_config {dict(info.default_config)} does not fit the signature "
            f"{info.target}{inspect.signature(target)}: {exc}",
        ) from exc
    if info.importer is not None:
        try:
            importer = resolve(info.importer)
        except Exception as exc:
            raise s.fail("metadata", f"importer {info.importer!r} does not import: {_describe(exc)}") from exc
        if not callable(importer):
            raise s.fail("metadata", f"importer {info.importer!r} is not callable")


def check_listing(s: Subject) -> None:
    if s.info.name not in s.listed(s.info.name):
        raise s.fail("listing", "not returned by list_models(); is its plugin installed and allowed by VIT_PLUGINS?")
    model = _build(s, "listing")
    if not isinstance(model, nn.Module):
        raise s.fail("listing", f"create_model returned {type(model).__name__}, not a torch.nn.Module")


def _build(s: Subject, check: str, **overrides: Any) -> nn.Module:
    try:
        return s.create(**overrides)
    except Exception as exc:
        config = {**s.info.default_config, **overrides}
        raise s.fail(check, f"building {s.info.target} with {config} raised {_describe(exc)}") from exc


def _forward(s: Subject, check: str, model: nn.Module, x: Any) -> Tensor:
    try:
        out = model(x)
    except Exception as exc:
        raise s.fail(check, f"forward on {s.info.input_kind} input {_shape(x)} raised {_describe(exc)}") from exc
    if not isinstance(out, Tensor):
        raise s.fail(check, f"forward returned {type(out).__name__}, expected a Tensor")
    return out


def _expect_width(s: Subject, check: str, out: Tensor, width: int, what: str) -> None:
    expected = (s.batch, width)
    if tuple(out.shape) != expected:
        raise s.fail(check, f"{what}: expected output shape {expected} (batch, num_classes), got {tuple(out.shape)}")


def _num_classes(s: Subject, check: str, model: nn.Module) -> int:
    value = getattr(model, "num_classes", None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise s.fail(check, "the model has no int attribute num_classes (VisionModel interface)")
    return value


def check_forward(s: Subject) -> None:
    model = _build(s, "forward").eval()
    with torch.no_grad():
        out = _forward(s, "forward", model, s.example())
    _expect_width(s, "forward", out, _num_classes(s, "forward", model), "default configuration")
    if not torch.isfinite(out).all():
        raise s.fail("forward", "output holds NaN or inf")


def check_interface(s: Subject) -> None:
    model = _build(s, "interface").eval()
    missing = [m for m in INTERFACE if not callable(getattr(model, m, None))]
    if not isinstance(getattr(model, "num_features", None), int):
        missing.append("num_features (int)")
    if missing:
        raise s.fail("interface", f"missing VisionModel members: {', '.join(missing)}")
    x = s.example()
    with torch.no_grad():
        out = _forward(s, "interface", model, x)
        try:
            features = model.forward_features(x)
            staged = model.forward_head(features)
            pooled = model.forward_head(features, pre_logits=True)
        except Exception as exc:
            raise s.fail("interface", f"forward_features/forward_head raised {_describe(exc)}") from exc
    if not isinstance(staged, Tensor) or staged.shape != out.shape or not torch.allclose(staged, out, atol=1e-5):
        raise s.fail("interface", "forward(x) differs from forward_head(forward_features(x))")
    if not isinstance(pooled, Tensor) or tuple(pooled.shape) != (s.batch, model.num_features):
        raise s.fail(
            "interface",
            f"forward_head(features, pre_logits=True) must give (batch, num_features) = "
            f"{(s.batch, model.num_features)}, got {_shape(pooled)}",
        )
    width = _num_classes(s, "interface", model) + 3
    try:
        model.reset_classifier(width)
    except Exception as exc:
        raise s.fail("interface", f"reset_classifier({width}) raised {_describe(exc)}") from exc
    with torch.no_grad():
        out = _forward(s, "interface", model, x)
    _expect_width(s, "interface", out, width, f"after reset_classifier({width})")


BATCH_TOLERANCE = 1e-5
"""Absolute and relative tolerance of the ``batch-independence`` check."""


def check_batch_independence(s: Subject) -> None:
    model = _build(s, "batch-independence").eval()
    x = s.info.example_input(max(2, s.batch))
    with torch.no_grad():
        whole = _forward(s, "batch-independence", model, x)[:1]
        alone = _forward(s, "batch-independence", model, x[:1])
    if whole.shape != alone.shape or not torch.allclose(whole, alone, atol=BATCH_TOLERANCE, rtol=BATCH_TOLERANCE):
        detail = (
            f"max abs difference {(whole - alone).abs().max().item():.2e}"
            if whole.shape == alone.shape
            else f"shapes {tuple(whole.shape)} and {tuple(alone.shape)}"
        )
        raise s.fail(
            "batch-independence",
            f"in eval mode, model(x)[:1] differs from model(x[:1]) ({detail}, tolerance {BATCH_TOLERANCE}): "
            "an example's output depends on the rest of its batch (batch statistics, a norm or pooling "
            "over the batch axis, tokens mixed across examples)",
        )


def check_num_params(s: Subject) -> None:
    counted = count_parameters(_build(s, "num-params"))
    if counted != s.info.num_params:
        raise s.fail(
            "num-params",
            f"metadata says num_params={s.info.num_params:_} but the default configuration "
            f"has {counted:_} parameters (off by {counted - s.info.num_params:+_}); "
            f"set num_params={counted:_}",
        )


def check_gradients(s: Subject) -> None:
    model = _build(s, "gradients").train()
    out = _forward(s, "gradients", model, s.example())
    (out * torch.randn_like(out)).sum().backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    dead = [name for name, p in trainable if p.grad is None]
    zero = [name for name, p in trainable if p.grad is not None and not p.grad.any()]
    if dead or zero:
        parts = [f"never used in forward: {', '.join(dead)}"] if dead else []
        parts += [f"all-zero gradient: {', '.join(zero)}"] if zero else []
        raise s.fail(
            "gradients",
            f"{len(dead) + len(zero)} of {len(trainable)} trainable parameters get no gradient "
            f"({'; '.join(parts)}); use them, or set requires_grad=False / register a buffer",
        )


def _bad_inputs(info: ModelInfo, batch: int) -> list[tuple[str, Any]]:
    channels = info.input_shape[0]
    good = torch.randn(info.input_shape)
    wrong_channels = torch.randn(channels + 1, *info.input_shape[1:])
    if info.input_kind == "image-list":
        return [
            (f"an image with {channels + 1} channels instead of {channels}", [good, wrong_channels]),
            ("an image with an extra leading dimension (wrong rank)", [good, good.unsqueeze(0)]),
        ]
    return [
        (f"{channels + 1} channels instead of {channels}", torch.stack([wrong_channels] * batch)),
        ("no batch dimension (wrong rank)", good),
    ]


def _input_argument(model: nn.Module) -> str | None:
    """The name of ``model.forward``'s first argument (``img``, ``video``, ...), if it has one."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    return parameters[0].name if parameters and parameters[0].kind != parameters[0].VAR_POSITIONAL else None


def _shapes(x: Any) -> list[tuple[int, ...]]:
    """The shape of ``x``, or of every tensor in a list of them."""
    if isinstance(x, Tensor):
        return [tuple(x.shape)]
    return [tuple(t.shape) for t in x if isinstance(t, Tensor)] if isinstance(x, (list, tuple)) else []


def _names_the_input(message: str, argument: str | None, x: Any) -> bool:
    """Whether an error message names the input argument (as a word) or a received shape (``(3, 32, 32)``
    or ``[3, 32, 32]``): "not enough values to unpack" does neither."""
    if argument and re.search(rf"(?<![\w.]){re.escape(argument)}(?!\w)", message):
        return True
    return any(str(shape) in message or str(list(shape)) in message for shape in _shapes(x))


def check_bad_input(s: Subject) -> None:
    model = _build(s, "bad-input").eval()
    argument = _input_argument(model)
    for what, x in _bad_inputs(s.info, s.batch):
        try:
            with torch.no_grad():
                model(x)
        except (ValueError, TypeError) as exc:
            if _names_the_input(str(exc), argument, x):
                continue
            shapes = " or ".join(map(str, _shapes(x))) or _shape(x)
            raise s.fail(
                "bad-input",
                f"input with {what} raised {_describe(exc)}, which names neither the argument "
                f"{argument!r} nor the received shape {shapes}; validate the input and say which argument "
                "is wrong, what it got and what was expected (see vit_core.validation.check_tensor)",
            ) from exc
        except Exception as exc:
            raise s.fail(
                "bad-input",
                f"input with {what} raised a bare {_describe(exc)}; validate the input and "
                "raise ValueError/TypeError naming the argument and the expected shape "
                "(see vit_core.validation.check_tensor)",
            ) from exc
        raise s.fail("bad-input", f"input with {what} ({_shape(x)}) was accepted; it must raise ValueError/TypeError")


def check_overrides(s: Subject) -> None:
    if "num_classes" not in s.info.signature().parameters:
        raise s.fail("overrides", "the constructor takes no num_classes argument")
    width = _num_classes(s, "overrides", _build(s, "overrides")) + 5
    model = _build(s, "overrides", num_classes=width).eval()
    if getattr(model, "num_classes", None) != width:
        raise s.fail(
            "overrides",
            f"create_model(..., num_classes={width}) built a model with "
            f"num_classes={getattr(model, 'num_classes', None)!r}",
        )
    with torch.no_grad():
        out = _forward(s, "overrides", model, s.example())
    _expect_width(s, "overrides", out, width, f"create_model(..., num_classes={width})")


CHECKS: dict[str, Callable[[Subject], None]] = {
    "metadata": check_metadata,
    "listing": check_listing,
    "forward": check_forward,
    "interface": check_interface,
    "batch-independence": check_batch_independence,
    "num-params": check_num_params,
    "gradients": check_gradients,
    "bad-input": check_bad_input,
    "overrides": check_overrides,
}
"""Every check by name, in the order :func:`check_model` runs them."""


def check_model(name: str, *, registry: Registry | None = None, skip: Iterable[str] = (), batch: int = 2) -> None:
    """Run every conformance check (but those in ``skip``) on the registered model ``name``.

    ``registry`` defaults to the process-wide one (installed plugins); pass a
    :class:`~vit_core.registry.Registry` to check models of plugins added in-process.
    Raises :class:`ConformanceError` on the first failed check.
    """
    unknown = set(skip) - set(CHECKS)
    if unknown:
        raise ValueError(f"skip names unknown checks {sorted(unknown)}; known: {', '.join(CHECKS)}")
    reg = registry if registry is not None else get_registry()
    try:
        info = reg.info(name)
    except KeyError as exc:
        raise ConformanceError(name, "metadata", str(exc)) from None
    subject = Subject(info, registry, batch)
    for check, run in CHECKS.items():
        if check not in skip:
            run(subject)


def check_plugin(
    plugin: str,
    *,
    registry: Registry | None = None,
    skip: Iterable[str] = (),
    batch: int = 2,
    check_models: bool = True,
) -> list[str]:
    """Check that ``plugin`` loaded without errors and registered models, then :func:`check_model` each one
    (unless ``check_models`` is false).  Returns the plugin's model names.
    """
    reg = registry if registry is not None else get_registry()
    record = reg.plugins.get(plugin)
    if record is None:
        known = ", ".join(reg.plugins) or "none"
        raise ConformanceError(
            plugin,
            "plugin",
            f"no plugin named {plugin!r} is loaded (loaded: {known}); is it installed and allowed by VIT_PLUGINS?",
            kind="plugin",
        )
    if record.errors:
        raise ConformanceError(plugin, "plugin", f"failed to load: {' | '.join(record.errors)}", kind="plugin")
    if not record.models:
        raise ConformanceError(plugin, "plugin", "registered no models", kind="plugin")
    for name in record.models if check_models else ():
        check_model(name, registry=registry, skip=skip, batch=batch)
    return list(record.models)


def model_names(pattern: str | None = None, plugin: str | None = None, registry: Registry | None = None) -> list[str]:
    """Registered model names to check (of one ``plugin`` and/or matching a wildcard ``pattern``)."""
    reg = registry if registry is not None else get_registry()
    return [info.name for info in reg.list(pattern, plugin)]


def parametrize_models(
    pattern: str | None = None,
    plugin: str | None = None,
    registry: Registry | None = None,
    argname: str = "model_name",
) -> Any:
    """``pytest.mark.parametrize`` over :func:`model_names`, one test id per model name."""
    import pytest

    names = model_names(pattern, plugin, registry)
    if not names:
        where = f"plugin {plugin!r}" if plugin else "any plugin"
        raise LookupError(f"no models registered by {where}" + (f" match {pattern!r}" if pattern else ""))
    return pytest.mark.parametrize(argname, names, ids=names)
