"""Conformance kit: the checks every registered model, trainer and backend must pass, first- or third-party.

A plugin's own test suite runs them on each of its models::

    from vit_core.testing import check_model, parametrize_models

    @parametrize_models(plugin="my-plugin")
    def test_conformance(model_name):
        check_model(model_name)

or all at once with ``check_plugin("my-plugin")`` (``export=True`` in either adds the export check).
Each failed check raises a :class:`ConformanceError` (an ``AssertionError``) whose message names the
model and the check.  Each kind has its profile (:data:`PROFILES`); the checks of a model, in order
(see :data:`CHECKS`):

``metadata``     the ModelInfo is complete (citation and example included), its target imports, its
                 default configuration and every preset's only use arguments of the constructor, and
                 its components (and a backend's ``plugs_into``) name registered models;
``listing``      the model is reachable through ``list_models`` and ``create_model``;
``forward``      the default configuration gives ``(batch, num_classes)`` on ``info.example_input``;
``interface``    ``forward == forward_head(forward_features)``, ``pre_logits`` gives
                 ``(batch, num_features)``, ``reset_classifier`` changes the output width;
``batch-independence``  in eval mode each example's output does not depend on the others in its
                 batch: ``model(x)[:1]`` equals ``model(x[:1])`` within ``1e-5``;
``intermediates``  ``feature_info`` describes each intermediate of ``forward_intermediates``; the final
                 features it returns, and its last intermediate with ``norm=True``, equal
                 ``forward_features(x)``; ``intermediates_only`` with ``indices=1`` gives one;
``encoder-protocol``  for models exposing the encoder protocol (``tokenize``, ``add_positions``,
                 ``prepend_prefix``, ``encode``, ...): the steps compose to ``forward_features``;
``gradients``    a backward pass of the output reaches every trainable parameter (but those whose names
                 start with one of the model's ``parameters_outside_forward`` prefixes: parameters a
                 trainer uses through another method, e.g. a distillation token);
``bad-input``    wrong channels and wrong rank raise ``ValueError``/``TypeError`` whose message names the
                 input argument or the received shape, not a bare shape error;
``overrides``    ``create_model(name, num_classes=...)`` changes the output width;
``save-load``    ``vit_core.save_model`` then ``vit_core.load_model`` gives bit-identical outputs.

On request (``check_model(name, export=True)``, :data:`OPTIONAL_CHECKS`; models and backends):
``export``       ``torch.export.export`` and ``torch.onnx.export`` with a dynamic batch axis; on another batch
                 size the exported program matches eager within ``1e-5`` and onnxruntime within ``1e-4``;
                 a model that does not export fails naming the stage and the blocking operator
                 (needs ``pip install 'vit-core[export]'``).

A trainer (:data:`TRAINER_CHECKS`): ``metadata``, ``listing``; ``loss``: built from its default
configuration (the kit builds its components), called on a batch (``trainer(images)``, or
``trainer(images, labels)`` with ``takes_labels``) it returns a finite scalar; ``gradients``: the
backward pass reaches every trained component (its patch embedding too, when it has one) and every
trainable parameter of the trainer's own.  A backend (:data:`BACKEND_CHECKS`): ``metadata``,
``listing``; ``shape``: ``(batch, tokens, dim)`` in, the same shape out, finite; ``gradients``;
``bad-input``: a wrong ``dim`` and a wrong rank raise ``ValueError``/``TypeError`` naming ``dim`` or the
shape; ``plugs-into``: ``plugs_into``'s model built with ``transformer=`` the backend classifies its
example input.  Presets are not built (they are large): ``metadata`` checks their configurations.

The kit imports torch (it builds models); pytest is imported only by :func:`parametrize_models`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
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

    @property
    def key(self) -> str:
        """The name to build it by: bare, or ``"plugin:name"`` when another plugin claims the bare name too."""
        return (self.registry if self.registry is not None else get_registry()).key(self.info)

    def create(self, **overrides: Any) -> nn.Module:
        if self.registry is not None:
            return self.registry.create(self.key, **overrides)
        return create_model(self.key, **overrides)

    def create_with_parts(self, **overrides: Any) -> tuple[nn.Module, dict[str, nn.Module]]:
        """A trainer and the components the registry built for it."""
        return (self.registry if self.registry is not None else get_registry()).create_with_parts(self.key, **overrides)

    def listed(self, pattern: str) -> list[str]:
        if self.registry is not None:
            return [self.registry.key(i) for i in self.registry.list(pattern)]
        return list_models(pattern)

    def example(self) -> Any:
        return self.info.example_input(self.batch)

    def fail(self, check: str, message: str) -> ConformanceError:
        return ConformanceError(self.info.name, check, message, kind=self.info.kind)


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
    _check_input_arguments(s)
    _check_presets_and_components(s)


IMAGE_SIZE_NAMES = ("image_size", "img_size", "input_size")
INPUT_ROLES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "channels_arg": ("channels", lambda name: "channels" in name),
    "size_arg": ("size", lambda name: name in IMAGE_SIZE_NAMES),
    "frames_arg": ("frames", lambda name: "frames" in name),
}
"""The ``ModelInfo`` fields naming the constructor arguments of the input's shape: the role each
names, and which constructor arguments hold that role (``n_input_channels``, ``img_size``, ``num_frames``)."""


def _check_input_arguments(s: Subject) -> None:
    """A ``channels_arg`` / ``size_arg`` / ``frames_arg`` that is not a constructor argument, where the
    constructor has arguments of that role, points ``vit train`` and ``vit bench`` at the default input."""
    if s.info.input_kind not in ("image", "video"):
        return
    parameters = s.info.signature().parameters
    for field, (role, holds) in INPUT_ROLES.items():
        named = getattr(s.info, field)
        candidates = [p for p in parameters if holds(p)]
        if named not in parameters and candidates:
            raise s.fail(
                "metadata",
                f"{field}={named!r} is not an argument of {s.info.target}; its constructor takes {candidates}: "
                f"set ModelInfo({field}=...) to the one holding the input's {role}",
            )


def _check_presets_and_components(s: Subject) -> None:
    info, reg = s.info, (s.registry if s.registry is not None else get_registry())
    signature = info.signature()
    configs = {"reference_config": info.reference_config}
    configs |= {f"preset {name!r} config": preset.config for name, preset in info.presets.items()}
    for what, config in configs.items():
        try:
            signature.bind_partial(**config)
        except TypeError as exc:
            raise s.fail("metadata", f"{what} {dict(config)} does not fit {info.target}{signature}: {exc}") from exc
    named = {f"{arg}=": c for arg, c in info.components.items()}
    if info.plugs_into is not None:
        named["plugs_into="] = info.plugs_into
    for where, component in named.items():
        try:
            reg.info(component.model)
        except KeyError as exc:
            raise s.fail("metadata", f"{where}{component} names no registered model: {exc}") from None


def check_listing(s: Subject) -> None:
    if s.key not in s.listed(s.info.name):
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


def _features_tensor(value: Any) -> Any:
    """The tensor of a features value (``NaViT``'s packed features carry theirs in ``tokens``)."""
    return getattr(value, "tokens", value)


def _same_features(a: Any, b: Any) -> bool:
    """Equal features: tensors (or packed features) within 1e-5, or tuples / lists of them (multi-branch models)."""
    a, b = _features_tensor(a), _features_tensor(b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_features(x, y) for x, y in zip(a, b))
    return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def _reduction(value: Any) -> tuple[int, ...] | None:
    """A ``feature_info`` reduction as a tuple (one per branch; a plain int is one branch), or None if invalid."""
    values = value if isinstance(value, tuple) and value else (value,)
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return values
    return None


def check_intermediates(s: Subject) -> None:
    model = _build(s, "intermediates").eval()
    x = s.example()
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not info or not all(isinstance(i, dict) for i in info):
        raise s.fail("intermediates", f"feature_info must be a non-empty list of dicts, got {info!r:.80}")
    missing = [i for i, entry in enumerate(info) if not {"module", "num_chs", "reduction"} <= set(entry)]
    if missing:
        raise s.fail("intermediates", f"feature_info entries {missing} lack module/num_chs/reduction")
    reductions = [_reduction(entry["reduction"]) for entry in info]
    bad = [(i, entry["reduction"]) for i, (entry, r) in enumerate(zip(info, reductions)) if r is None]
    if bad:
        raise s.fail(
            "intermediates",
            f"feature_info reductions must be positive ints (input side / map side), or a tuple of them, one "
            f"per branch of a multi-branch model: {bad}",
        )
    shrinking = [i for i in range(1, len(info)) if any(a < b for a, b in zip(reductions[i], reductions[i - 1]))]
    if shrinking:
        raise s.fail(
            "intermediates",
            f"feature_info reductions must not decrease from stage to stage; entries {shrinking} do: "
            f"{[entry['reduction'] for entry in info]}",
        )
    with torch.no_grad():
        try:
            features = model.forward_features(x)
            final, hidden = model.forward_intermediates(x, norm=True)
            only = model.forward_intermediates(x, indices=1, intermediates_only=True)
        except Exception as exc:
            raise s.fail("intermediates", f"forward_intermediates raised {_describe(exc)}") from exc
    if len(hidden) != len(info):
        raise s.fail(
            "intermediates",
            f"forward_intermediates gave {len(hidden)} intermediates, feature_info describes {len(info)}",
        )
    for what, value in (("the returned final features", final), ("the last intermediate (norm=True)", hidden[-1])):
        if not _same_features(value, features):
            shapes = f"{_shape(_features_tensor(value))} vs {_shape(features)}"
            raise s.fail("intermediates", f"{what} differ from forward_features(x) ({shapes})")
    if not isinstance(only, list) or len(only) != 1:
        raise s.fail("intermediates", f"forward_intermediates(indices=1, intermediates_only=True) gave {only!r:.60}")
    for entry, h in zip(info, hidden):
        h = _features_tensor(h)
        if not isinstance(h, Tensor):
            continue  # multi-branch intermediates: feature_info describes each branch's width its own way
        channels = h.shape[1] if h.ndim == 4 else h.shape[-1]
        if channels != entry["num_chs"]:
            raise s.fail(
                "intermediates", f"{entry['module']}: feature_info says {entry['num_chs']} channels, got {channels}"
            )


def check_encoder_protocol(s: Subject) -> None:
    """For models that implement the encoder protocol: its steps compose to ``forward_features``."""
    from vit_core.models.patch_model import ENCODER_PROTOCOL

    model = _build(s, "encoder-protocol").eval()
    if not all(hasattr(model, name) for name in ENCODER_PROTOCOL):
        return
    x = s.example()
    with torch.no_grad():
        try:
            tokens, grid = model.tokenize(x)
            embedded = model.prepend_prefix(model.add_positions(tokens, grid))
            encoded = model.encode(embedded, **getattr(model, "trunk_kwargs", lambda g: {})(grid))
            features = model.forward_features(x)
        except Exception as exc:
            raise s.fail(
                "encoder-protocol", f"tokenize/add_positions/prepend_prefix/encode raised {_describe(exc)}"
            ) from exc
    if embedded.shape[1] != tokens.shape[1] + model.num_prefix_tokens:
        raise s.fail(
            "encoder-protocol",
            f"prepend_prefix added {embedded.shape[1] - tokens.shape[1]} tokens, num_prefix_tokens says "
            f"{model.num_prefix_tokens}",
        )
    if encoded.shape != features.shape or not torch.allclose(encoded, features, atol=1e-5):
        raise s.fail(
            "encoder-protocol", "encode(prepend_prefix(add_positions(*tokenize(x)))) differs from forward_features(x)"
        )


GRADIENT_PASSES = 3
"""Training-mode backward passes whose gradients the ``gradients`` check accumulates: stochastic depth
or layer drop may skip a branch for a whole small batch in one pass, never (in practice) in all."""


def check_gradients(s: Subject) -> None:
    model = _build(s, "gradients").train()
    for _ in range(GRADIENT_PASSES):
        out = _forward(s, "gradients", model, s.example())
        (out * torch.randn_like(out)).sum().backward()
    outside = tuple(getattr(model, "parameters_outside_forward", ()))
    trainable = [
        (name, p) for name, p in model.named_parameters() if p.requires_grad and not name.startswith(outside or ("\0",))
    ]
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


def check_save_load(s: Subject) -> None:
    import tempfile

    from vit_core.interop.saving import load_model, save_model

    model = _build(s, "save-load").eval()
    x = s.example()
    with tempfile.TemporaryDirectory() as folder:
        try:
            save_model(model, folder, name=s.key, registry=s.registry)
            loaded = load_model(folder, registry=s.registry)
        except Exception as exc:
            raise s.fail("save-load", f"save_model/load_model raised {_describe(exc)}") from exc
    with torch.no_grad():
        before = _forward(s, "save-load", model, x)
        after = _forward(s, "save-load", loaded, x)
    if type(loaded) is not type(model) or not torch.equal(before, after):
        raise s.fail(
            "save-load",
            f"the model loaded from save_model's folder ({type(loaded).__name__}) does not give bit-identical "
            "outputs: every parameter and persistent buffer must be in the state dict, and the recorded "
            "constructor arguments (init_config) must rebuild the same architecture",
        )


def check_export_model(s: Subject) -> None:
    from vit_core.interop.export import ExportError, check_export

    model = _build(s, "export").eval()
    try:
        check_export(model, s.info.example_input(s.batch), s.info.example_input(s.batch + 1))
    except ExportError as exc:
        raise s.fail("export", str(exc)) from exc
    except ImportError as exc:
        raise s.fail("export", f"{_describe(exc)}; the export check needs pip install 'vit-core[export]'") from exc


# The trainer profile.


def _assemble(s: Subject, check: str) -> tuple[nn.Module, dict[str, nn.Module]]:
    try:
        return s.create_with_parts()
    except Exception as exc:
        config = dict(s.info.default_config)
        raise s.fail(check, f"building {s.info.target} from {config} raised {_describe(exc)}") from exc


def _loss(s: Subject, check: str, trainer: nn.Module, parts: dict[str, nn.Module]) -> Tensor:
    reg = s.registry if s.registry is not None else get_registry()
    call = "trainer(images, labels)" if s.info.takes_labels else "trainer(images)"
    try:
        loss = trainer(*reg.example_args(s.info, parts, s.batch))
    except Exception as exc:
        raise s.fail(check, f"{call} on a batch of {s.batch} raised {_describe(exc)}") from exc
    if not isinstance(loss, Tensor) or loss.ndim != 0 or not loss.is_floating_point():
        raise s.fail(check, f"{call} must return a scalar floating-point loss tensor, got {_shape(loss)}")
    if not torch.isfinite(loss):
        raise s.fail(check, f"{call} returned a non-finite loss {loss.item()}")
    return loss


def check_loss(s: Subject) -> None:
    trainer, parts = _assemble(s, "loss")
    _loss(s, "loss", trainer.train(), parts)


def check_trainer_gradients(s: Subject) -> None:
    trainer, parts = _assemble(s, "gradients")
    for _ in range(GRADIENT_PASSES):  # masks and drop-path draw anew each pass, as for models
        _loss(s, "gradients", trainer.train(), parts).backward()
    part_params = {id(p) for part in parts.values() for p in part.parameters()}
    for arg, component in s.info.components.items():
        part = parts.get(arg)
        if not component.trained or part is None:
            continue
        reached = {id(p) for p in part.parameters() if p.grad is not None and p.grad.any()}
        if not reached:
            raise s.fail(
                "gradients",
                f"the loss does not reach {arg}={component}: none of its parameters gets a gradient; "
                f"the trainer must train the model passed as {arg}=",
            )
        embed = getattr(part, "patch_embed", None)
        if isinstance(embed, nn.Module) and not any(id(p) in reached for p in embed.parameters()):
            raise s.fail(
                "gradients",
                f"the loss reaches {arg}={component} but not its patch embedding ({arg}.patch_embed): "
                "the gradient must flow through the whole encoder",
            )
    own = [(n, p) for n, p in trainer.named_parameters() if p.requires_grad and id(p) not in part_params]
    dead = [n for n, p in own if p.grad is None or not p.grad.any()]
    if dead:
        raise s.fail(
            "gradients",
            f"{len(dead)} of the trainer's own {len(own)} trainable parameters get no gradient: {', '.join(dead)}",
        )


# The backend profile.


def check_shape(s: Subject) -> None:
    backend = _build(s, "shape").eval()
    x = s.example()
    with torch.no_grad():
        out = _forward(s, "shape", backend, x)
    if out.shape != x.shape:
        raise s.fail(
            "shape", f"a backend maps (batch, tokens, dim) to the same shape: {tuple(x.shape)} gave {tuple(out.shape)}"
        )
    if not torch.isfinite(out).all():
        raise s.fail("shape", "output holds NaN or inf")


def check_backend_input(s: Subject) -> None:
    backend = _build(s, "bad-input").eval()
    tokens, dim = s.info.input_shape
    cases = [
        (f"dim {dim + 1} instead of {dim}", torch.randn(s.batch, tokens, dim + 1)),
        ("no batch dimension (wrong rank)", torch.randn(tokens, dim)),
    ]
    for what, x in cases:
        try:
            with torch.no_grad():
                backend(x)
        except (ValueError, TypeError) as exc:
            if _names_the_input(str(exc), "dim", x):
                continue
            raise s.fail(
                "bad-input", f"input with {what} raised {_describe(exc)}, which names neither dim nor {tuple(x.shape)}"
            ) from exc
        except Exception as exc:
            raise s.fail(
                "bad-input",
                f"input with {what} raised a bare {_describe(exc)}; check the input and raise "
                "ValueError/TypeError naming dim and the shape received (see vit_core.validation.check_tensor)",
            ) from exc
        raise s.fail(
            "bad-input", f"input with {what} ({tuple(x.shape)}) was accepted; it must raise ValueError/TypeError"
        )


def check_plugs_into(s: Subject) -> None:
    host = s.info.plugs_into
    if host is None:
        raise s.fail("plugs-into", "a backend must name the model it plugs into (plugs_into=Component(...))")
    reg = s.registry if s.registry is not None else get_registry()
    backend = _build(s, "plugs-into")
    try:
        model = reg.create(host.model, **host.config, transformer=backend).eval()
        x = reg.info(host.model).example_input(s.batch)
    except Exception as exc:
        raise s.fail(
            "plugs-into",
            f"building {host} with transformer=<this backend> raised {_describe(exc)}; plugs_into must give a "
            "configuration whose dim and token count fit the backend's default configuration",
        ) from exc
    with torch.no_grad():
        out = _forward(s, "plugs-into", model, x)
    _expect_width(s, "plugs-into", out, _num_classes(s, "plugs-into", model), f"{host} with transformer=")


CHECKS: dict[str, Callable[[Subject], None]] = {
    "metadata": check_metadata,
    "listing": check_listing,
    "forward": check_forward,
    "interface": check_interface,
    "batch-independence": check_batch_independence,
    "intermediates": check_intermediates,
    "encoder-protocol": check_encoder_protocol,
    "gradients": check_gradients,
    "bad-input": check_bad_input,
    "overrides": check_overrides,
    "save-load": check_save_load,
}
"""Every check of a model by name, in the order :func:`check_model` runs them."""

TRAINER_CHECKS: dict[str, Callable[[Subject], None]] = {
    "metadata": check_metadata,
    "listing": check_listing,
    "loss": check_loss,
    "gradients": check_trainer_gradients,
}
"""The checks of a trainer (``kind="trainer"``)."""

BACKEND_CHECKS: dict[str, Callable[[Subject], None]] = {
    "metadata": check_metadata,
    "listing": check_listing,
    "shape": check_shape,
    "gradients": check_gradients,
    "bad-input": check_backend_input,
    "plugs-into": check_plugs_into,
}
"""The checks of a backend (``kind="backend"``)."""

OPTIONAL_CHECKS: dict[str, Callable[[Subject], None]] = {"export": check_export_model}
"""Checks run on request: ``check_model(name, export=True)`` (models and backends; trainers are training-time
wrappers, not deployed)."""

PROFILES: dict[str, dict[str, Callable[[Subject], None]]] = {
    "model": CHECKS,
    "trainer": TRAINER_CHECKS,
    "backend": BACKEND_CHECKS,
}
"""The checks of each kind."""


def _check_export_flag(export: object) -> None:
    if not isinstance(export, bool):
        raise TypeError(f"export must be a bool (add the export check or not), got {export!r}")


def check_model(
    name: str, *, registry: Registry | None = None, skip: Iterable[str] = (), batch: int = 2, export: bool = False
) -> None:
    """Run every conformance check of its kind (but those in ``skip``) on the registered entry ``name``;
    ``export=True`` adds the ``export`` check (models and backends).

    ``registry`` defaults to the process-wide one (installed plugins); pass a
    :class:`~vit_core.registry.Registry` to check models of plugins added in-process.
    Raises :class:`ConformanceError` on the first failed check.
    """
    _check_export_flag(export)
    known = dict.fromkeys(check for profile in (*PROFILES.values(), OPTIONAL_CHECKS) for check in profile)
    unknown = set(skip) - set(known)
    if unknown:
        raise ValueError(f"skip names unknown checks {sorted(unknown)}; known: {', '.join(known)}")
    reg = registry if registry is not None else get_registry()
    try:
        info = reg.info(name)
    except KeyError as exc:
        raise ConformanceError(name, "metadata", str(exc)) from None
    subject = Subject(info, registry, batch)
    checks = dict(PROFILES[info.kind])
    if export and info.kind != "trainer":
        checks.update(OPTIONAL_CHECKS)
    for check, run in checks.items():
        if check not in skip:
            run(subject)


def check_plugin(
    plugin: str,
    *,
    registry: Registry | None = None,
    skip: Iterable[str] = (),
    batch: int = 2,
    check_models: bool = True,
    export: bool = False,
) -> list[str]:
    """Check that ``plugin`` loaded without errors and registered models, then :func:`check_model` each one
    (unless ``check_models`` is false; ``export=True`` adds the ``export`` check, as in :func:`check_model`).
    Returns the plugin's model names.
    """
    _check_export_flag(export)
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
        raise ConformanceError(plugin, "plugin", f"failed to load: {record.cause}", kind="plugin")
    if record.warnings:
        raise ConformanceError(plugin, "plugin", f"name conflicts: {' | '.join(record.warnings)}", kind="plugin")
    if not record.models:
        raise ConformanceError(plugin, "plugin", "registered no models", kind="plugin")
    for name in record.models if check_models else ():
        check_model(f"{record.name}:{name}", registry=registry, skip=skip, batch=batch, export=export)
    return list(record.models)


def model_names(pattern: str | None = None, plugin: str | None = None, registry: Registry | None = None) -> list[str]:
    """Names to check (of one ``plugin`` and/or matching a wildcard ``pattern``): every registered model,
    trainer and backend (presets are checked through their model's metadata), and what plugins that
    failed to load would have registered, so that their checks fail with the plugin's error: their
    names where known, else ``"plugin:plugin"`` (without a ``pattern``).
    """
    reg = registry if registry is not None else get_registry()
    names = [reg.key(info) for info in reg.list(pattern, plugin, presets=False)]
    for key, record in reg.plugins.items():
        if record.loaded or key != record.name or plugin not in (None, record.name, record.distribution):
            continue
        if record.claims:
            names += [f"{record.name}:{n}" for n in record.claims if pattern is None or fnmatch.fnmatchcase(n, pattern)]
        elif pattern is None:
            names.append(f"{record.name}:{record.name}")
    return names


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
