"""The model registry: metadata of every model, trainer and backend of every installed plugin.

Plugins are discovered through the entry-point group ``vit_core.plugins``.  Each entry point is
loaded in isolation: one that fails to import, names an unknown hook, targets another hook API
version or registers malformed metadata is recorded with its error and skipped, never fatal;
the names it would have registered are remembered where they can be learned, so that asking for
one of them says which plugin failed and why.  ``VIT_PLUGINS`` (comma-separated entry-point or
distribution names) allowlists plugins before any entry point is loaded; set and empty, it loads
none.  The core's own models register through the same hooks (they are always present).

Names (models and presets share one namespace):

* vit-core's names are reserved: a plugin claiming one gets an error and is not registered
  under it;
* every entry is reachable under its qualified name ``"plugin:name"``;
* a bare name claimed by several plugins belongs to none of them: looking it up is an error
  listing the claimants.  The outcome does not depend on the order plugins are loaded in.

Metadata is plain data: models are named by ``"module:attr"`` targets and imported only when
built or described, so ``vit list`` does not import torch.  Parameter counts are measured from
the built model (``vit describe``), never typed into the metadata.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata as metadata
import inspect
import math
import os
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import pluggy

from vit_core.hookspecs import ENTRY_POINT_GROUP, HOOK_API_VERSION, HOOK_NAMES, PROJECT, VitHookSpecs

KINDS = {
    "model": "a classifier or backbone: input -> (batch, num_classes)",
    "trainer": "an SSL or distillation wrapper around a model: trainer(images[, labels]) -> scalar loss",
    "backend": "a trunk for a model's transformer= argument: (batch, tokens, dim) -> (batch, tokens, dim)",
}
"""What each ``ModelInfo.kind`` registers."""
INPUT_KINDS = {
    "image": "(batch, channels, height, width)",
    "video": "(batch, channels, frames, height, width)",
    "image-list": "list of (channels, height, width) images of any size",
    "tokens": "(batch, tokens, dim)",
}
"""``ModelInfo.input_kind`` values and the layout each stands for (``tokens``: backends only)."""
CORE_PLUGIN = "vit-core"
"""The plugin name of vit-core's own models; its names are reserved."""
ALLOWLIST_ENV = "VIT_PLUGINS"
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class MetadataError(ValueError):
    """A plugin registered incomplete or malformed metadata."""


class TargetImportError(ImportError):
    """A registered target (or importer) does not import; the message names the model and its plugin."""


class ModelLookupError(KeyError):
    """A name that does not resolve to exactly one registered entry (base of the three lookup errors)."""

    def __str__(self) -> str:
        return self.args[0]


class UnknownModelError(ModelLookupError):
    """No entry of that name; ``matches`` holds close names.  Failed and skipped plugins are mentioned."""

    def __init__(self, name: str, matches: list[str], hints: Iterable[str] = ()) -> None:
        self.name, self.matches = name, matches
        message = f"unknown model {name!r}"
        message += f"; did you mean {', '.join(matches)}?" if matches else "; run `vit list` to see them"
        super().__init__("".join([message, *(f"; {hint}" for hint in hints)]))


class FailedPluginError(ModelLookupError):
    """The name belongs (or may belong) to a plugin that failed to load; ``plugin`` is its record."""

    def __init__(self, name: str, plugin: PluginRecord) -> None:
        self.name, self.plugin = name, plugin
        super().__init__(f"model {name!r} belongs to plugin {plugin.name!r} which failed to load: {plugin.cause}")


class AmbiguousModelError(ModelLookupError):
    """Several plugins claim the name; ``claimants`` are their entries."""

    def __init__(self, name: str, claimants: list[ModelInfo]) -> None:
        self.name, self.claimants = name, claimants
        who = " and ".join(f"plugin {i.plugin!r} ({i.distribution} {i.version})".replace(" )", ")") for i in claimants)
        use = " or ".join(repr(i.qualified_name) for i in claimants)
        super().__init__(f"model name {name!r} is claimed by {who}; none of them gets the bare name: use {use}")


def _check_shape(shape: Any) -> bool:
    return isinstance(shape, tuple) and bool(shape) and all(type(s) is int and s > 0 for s in shape)


@dataclass(frozen=True)
class Component:
    """A registered model built for one argument of another entry's configuration.

    A trainer's ``default_config`` names the model it wraps this way:
    ``{"encoder": Component("vit"), "decoder_dim": 32}`` builds ``vit`` from its default
    configuration and passes it as ``encoder=``.  ``config`` updates that configuration
    (``Component("vit", {"image_size": 64})``); ``model`` may be a preset (``"vit-b-16"``) or a
    qualified name (``"plugin:name"``).  ``trained=False`` marks a frozen part (a distillation
    teacher) that a trainer's loss need not reach.  ``create_model(name, encoder=my_model)``
    replaces the component with a model of your own.
    """

    model: str
    config: Mapping[str, Any] = field(default_factory=dict)
    trained: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.model, str) or not _NAME.match(self.model.rpartition(":")[2]):
            problems.append(f"model must be a registered name, got {self.model!r}")
        if not isinstance(self.config, Mapping):
            problems.append(f"config must be a mapping of that model's arguments, got {self.config!r:.60}")
        if not isinstance(self.trained, bool):
            problems.append(f"trained must be a bool, got {self.trained!r}")
        if problems:
            raise MetadataError("Component: " + "; ".join(problems))

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{self.model}({args})" + ("" if self.trained else " [frozen]")

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "config": dict(self.config), "trained": self.trained}


@dataclass(frozen=True)
class Preset:
    """A named architecture (``"vit-b-16"``): the complete keyword arguments of the entry's target.

    ``config`` is not merged with the small ``default_config``: constructor defaults fill what it
    leaves out.  ``input_shape`` is one sample for the preset (default: the entry's
    ``input_shape``); ``summary`` replaces the entry's summary in ``vit describe``.
    """

    config: Mapping[str, Any]
    input_shape: tuple[int, ...] | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.config, Mapping):
            problems.append("config must be a mapping of constructor arguments")
        if self.input_shape is not None and not _check_shape(self.input_shape):
            problems.append(f"input_shape must be None or a tuple of positive ints, got {self.input_shape!r}")
        if not isinstance(self.summary, str):
            problems.append("summary must be a string")
        if problems:
            raise MetadataError("Preset: " + "; ".join(problems))


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """Everything ``vit list`` and ``vit describe`` show about one registered entry.

    Attributes:
        name: kebab-case registry name (``"vit"``, ``"simple-vit"``).
        target: ``"module:attr"`` of the class or factory.
        family: grouping such as ``"vit"``, ``"hierarchical"``, ``"video"``, ``"ssl"``.
        paper_title, paper_url: the paper the entry implements.
        summary: one line on what the entry changes.
        input_kind: ``"image"``, ``"video"``, ``"image-list"``, or ``"tokens"`` (backends).
        default_config: keyword arguments of a small configuration that builds in about a second;
            :class:`Component` values are registered models built for that argument.
        input_shape: one sample's shape for the default configuration, e.g. ``(3, 32, 32)``;
            ``(tokens, dim)`` for a backend.
        kind: ``"model"`` (default), ``"trainer"`` or ``"backend"`` (see :data:`KINDS`).
        presets: named architectures, ``{"vit-b-16": Preset({...})}``, registered as names of
            their own (``create_model("vit-b-16")``).
        takes_labels: trainers only: called as ``trainer(images, labels)``, not ``trainer(images)``.
        channels_arg, size_arg, frames_arg: the constructor arguments holding the input's channel
            count (``"channels"``; MobileViT's is ``"in_channels"``), its ``(height, width)`` or side
            (``"image_size"``; CCT's is ``"img_size"``) and, for video, its frame count (``"frames"``;
            CCT3D's is ``"num_frames"``): ``vit train``, ``vit bench`` and ``vit export`` read them to
            shape the input of a configuration that changes them.
        plugs_into: backends only (required): the model it is a ``transformer=`` for, with the
            configuration that fits the backend's default ``dim`` and token count.
        citation: BibTeX of the paper.
        example: a short Python example.
        importer: ``"module:function"`` converting a vit-pytorch state dict (see ``vit_core.interop.reference``).
        reference: the vit-pytorch class the entry mirrors, e.g. ``"vit_pytorch.vit.ViT"``.
        reference_config: constructor arguments the reference does not take (or ignores), at the
            values it hard-codes (vit-pytorch's CvT: ``{"dim_head": 64}``): ``vit convert`` builds
            the model with them, over ``default_config`` and under the user's ``--set``.
        plugin, distribution, version, preset_of: filled in by the registry.
    """

    name: str
    target: str
    family: str
    paper_title: str
    paper_url: str
    summary: str
    input_kind: str
    default_config: Mapping[str, Any]
    input_shape: tuple[int, ...]
    kind: str = "model"
    presets: Mapping[str, Preset] = field(default_factory=dict)
    takes_labels: bool = False
    channels_arg: str = "channels"
    size_arg: str = "image_size"
    frames_arg: str = "frames"
    plugs_into: Component | None = None
    citation: str = ""
    example: str = ""
    importer: str | None = None
    reference: str | None = None
    reference_config: Mapping[str, Any] = field(default_factory=dict)
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    preset_of: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            problems.append(f"name must be kebab-case (e.g. 'my-vit'), got {self.name!r}")
        for attr in ("target", "importer"):
            value = getattr(self, attr)
            if (value is not None or attr == "target") and not (isinstance(value, str) and _TARGET.match(value)):
                problems.append(f"{attr} must be a 'module:attr' string, got {value!r}")
        for attr in ("family", "paper_title", "summary", "channels_arg", "size_arg", "frames_arg"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                problems.append(f"{attr} must be a non-empty string")
        if not isinstance(self.paper_url, str) or not self.paper_url.startswith(("http://", "https://")):
            problems.append(f"paper_url must be an http(s) link, got {self.paper_url!r}")
        if self.input_kind not in INPUT_KINDS:
            problems.append(f"input_kind must be one of {sorted(INPUT_KINDS)}, got {self.input_kind!r}")
        if not isinstance(self.default_config, Mapping):
            problems.append("default_config must be a mapping of constructor arguments")
        if not isinstance(self.reference_config, Mapping):
            problems.append("reference_config must be a mapping of constructor arguments")
        if not _check_shape(self.input_shape):
            problems.append(f"input_shape must be a tuple of positive ints, got {self.input_shape!r}")
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        else:
            problems += self._kind_problems()
        problems += self._preset_problems()
        if problems:
            raise MetadataError(f"model {self.name!r}: " + "; ".join(problems))

    def _kind_problems(self) -> list[str]:
        problems = []
        if (self.input_kind == "tokens") != (self.kind == "backend"):
            problems.append(
                "a backend takes input_kind='tokens' with input_shape=(tokens, dim)"
                if self.kind == "backend"
                else "input_kind 'tokens' is for backends (kind='backend')"
            )
        if self.kind == "backend" and _check_shape(self.input_shape) and len(self.input_shape) != 2:
            problems.append(f"a backend's input_shape is (tokens, dim), got {self.input_shape!r}")
        if self.kind == "backend" and not isinstance(self.plugs_into, Component):
            problems.append(
                "a backend must say what it plugs into: plugs_into=Component('vit', {...}), the model "
                "whose transformer= it fills"
            )
        if self.kind != "backend" and self.plugs_into is not None:
            problems.append("plugs_into is for backends (kind='backend')")
        if not isinstance(self.takes_labels, bool) or (self.takes_labels and self.kind != "trainer"):
            problems.append(f"takes_labels must be a bool and is for trainers, got {self.takes_labels!r}")
        if (
            self.kind == "trainer"
            and isinstance(self.default_config, Mapping)
            and not any(c.trained for c in self.components.values())
        ):
            problems.append("a trainer's default_config names the model it trains: {'encoder': Component('vit'), ...}")
        return problems

    def _preset_problems(self) -> list[str]:
        if not isinstance(self.presets, Mapping):
            return [f"presets must be a mapping of name to Preset, got {self.presets!r:.60}"]
        problems = []
        for name, preset in self.presets.items():
            if not isinstance(name, str) or not _NAME.match(name) or name == self.name:
                problems.append(f"preset name must be kebab-case and differ from the model's, got {name!r}")
            if not isinstance(preset, Preset):
                problems.append(f"preset {name!r} must be a Preset(config, ...), got {type(preset).__name__}")
        return problems

    @property
    def qualified_name(self) -> str:
        """``"plugin:name"``: reaches this entry even when another plugin claims the same name."""
        return f"{self.plugin}:{self.name}"

    @property
    def input_layout(self) -> str:
        return INPUT_KINDS[self.input_kind]

    @property
    def components(self) -> dict[str, Component]:
        """The arguments of ``default_config`` that are registered models built for it."""
        return {arg: value for arg, value in self.default_config.items() if isinstance(value, Component)}

    def load_class(self) -> Any:
        """Import the target; a failure is a :class:`TargetImportError` naming the model and its plugin."""
        try:
            return resolve(self.target)
        except Exception as exc:
            raise TargetImportError(
                f"{self.describe_origin()}: target {self.target!r} does not import ({type(exc).__name__}: {exc})"
            ) from exc

    def describe_origin(self) -> str:
        """``"model 'x' of plugin 'p' (dist 1.0)"``, for messages."""
        origin = f"{self.kind} {self.name!r}"
        if self.plugin:
            origin += f" of plugin {self.plugin!r} ({self.distribution} {self.version})".replace(" )", ")")
        return origin

    def signature(self) -> inspect.Signature:
        return inspect.signature(self.load_class())

    def example_input(self, batch: int = 1) -> Any:
        """A random input of the default configuration: a tensor, or a list for ``image-list``."""
        import torch

        if self.input_kind == "image-list":
            return [torch.randn(self.input_shape) for _ in range(batch)]
        return torch.randn(batch, *self.input_shape)


def resolve(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class PluginRecord:
    """What ``vit plugins`` shows about one plugin.

    ``errors`` are problems that kept the plugin (``loaded`` false) or some of its names from being
    registered; ``warnings`` are names it shares with another plugin (reachable only qualified).
    ``claims`` are the names a plugin that failed to load would have registered (``None``: unknown).
    """

    name: str
    distribution: str
    version: str
    api_version: int | None = None
    models: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    loaded: bool = False
    claims: list[str] | None = None
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def cause(self) -> str:
        return " | ".join(self.errors) or "no error recorded"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "api_version": self.api_version,
            "loaded": self.loaded,
            "ok": self.ok,
            "models": list(self.models),
            "presets": list(self.presets),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


def _reraise_interrupt(exc: BaseException) -> None:
    """Plugin code may raise anything, even ``SystemExit``; only an interrupt stops the host."""
    if isinstance(exc, KeyboardInterrupt):
        raise exc


def _error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _is_hookimpl(obj: Any) -> bool:
    return getattr(obj, f"{PROJECT}_impl", None) is not None


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else f"; the hooks are {', '.join(HOOK_NAMES)}"


def _attribute(plugin: object, name: str) -> Any:
    try:
        return getattr(plugin, name, None)
    except Exception:  # a lazy attribute that fails to import is no hook
        return None


def _hook_problems(plugin: object) -> list[str]:
    """Functions named like a hook (or nearly) that are not marked with ``@hookimpl``."""
    problems = []
    for attr in sorted(a for a in dir(plugin) if a.startswith("vit_")):
        obj = _attribute(plugin, attr)
        if not callable(obj) or _is_hookimpl(obj):
            continue
        close = difflib.get_close_matches(attr, HOOK_NAMES, n=1, cutoff=0.75)
        if attr in HOOK_NAMES:
            problems.append(
                f"function {attr} is not marked as a hook: decorate it with @hookimpl "
                "(from vit_core.hookspecs import hookimpl); vit-core ignores it as it is"
            )
        elif close and not _is_hookimpl(_attribute(plugin, close[0])):
            problems.append(f"function {attr} is not a hook: did you mean {close[0]!r}, marked with @hookimpl?")
    return problems


def _claimed_names(plugin: object) -> list[str] | None:
    """The names a plugin's ``vit_register_models`` returns, learned without trusting the plugin."""
    hook = getattr(plugin, "vit_register_models", None)
    if not callable(hook):
        return None
    try:
        infos = list(hook())
    except BaseException as exc:
        _reraise_interrupt(exc)
        return None
    names = []
    for info in infos:
        if isinstance(info, ModelInfo):
            names += [info.name, *info.presets]
    return names or None


class Registry:
    """Models, trainers, backends and presets (entries) and the plugins known to this process."""

    def __init__(self) -> None:
        self.entries: dict[str, ModelInfo] = {}
        """Every registered entry by qualified name ``"plugin:name"``."""
        self.models: dict[str, ModelInfo] = {}
        """Entries by bare name, for names exactly one plugin claims."""
        self.conflicts: dict[str, list[ModelInfo]] = {}
        """Bare names several plugins claim (reachable only qualified)."""
        self.plugins: dict[str, PluginRecord] = {}
        self.skipped: list[str] = []
        """Entry points the allowlist kept from loading."""
        self.unmatched_allowlist: list[str] = []
        """``VIT_PLUGINS`` items that name no installed plugin."""
        self._manager = pluggy.PluginManager(PROJECT)
        self._manager.add_hookspecs(VitHookSpecs)

    # Loading.

    def add_plugin(
        self, plugin: ModuleType | object, name: str, distribution: str = "", version: str = ""
    ) -> PluginRecord:
        """Register one plugin object's hooks and its entries; failures are recorded, not raised."""
        if name in self.plugins:
            raise ValueError(f"a plugin named {name!r} is already registered")
        record = PluginRecord(name, distribution or name, version)
        self.plugins[name] = record
        infos = self._load_hooks(plugin, record)
        if infos is None:
            record.claims = _claimed_names(plugin)
            if self._manager.has_plugin(name):
                self._manager.unregister(name=name)
            return record
        record.loaded = True
        for info in infos:
            self._add(record, info)
        self._index()
        return record

    def _load_hooks(self, plugin: object, record: PluginRecord) -> list[ModelInfo] | None:
        """The plugin's ModelInfo objects, or ``None`` (errors recorded) when it cannot be loaded."""
        record.errors += _hook_problems(plugin)
        try:
            self._manager.register(plugin, name=record.name)
            self._manager.check_pending()
        except Exception as exc:
            unknown = re.search(r"unknown hook '(\w+)'", str(exc))
            hint = _did_you_mean(unknown.group(1)) if unknown else ""
            record.errors.append(f"invalid hooks: {_error(exc)}{hint}")
            return None
        impls = {
            hook: [i for i in getattr(self._manager.hook, hook).get_hookimpls() if i.plugin_name == record.name]
            for hook in HOOK_NAMES
        }
        try:
            record.api_version = impls["vit_api_version"][0].function() if impls["vit_api_version"] else None
        except BaseException as exc:
            _reraise_interrupt(exc)
            record.errors.append(f"vit_api_version failed: {_error(exc)}")
            return None
        if record.api_version != HOOK_API_VERSION:
            stated = (
                "does not implement vit_api_version()"
                if record.api_version is None
                else f"targets hook API version {record.api_version!r}"
            )
            record.errors.append(
                f"{stated} but vit-core {_core_version()} provides version {HOOK_API_VERSION}; "
                f"implement vit_api_version() returning {HOOK_API_VERSION}"
            )
            return None
        if record.errors:  # an unmarked hook: the plugin would load without what its author meant
            return None
        if not impls["vit_register_models"]:
            record.errors.append("implements no vit_register_models() hook, so it registers nothing")
            return None
        infos: list[ModelInfo] = []
        for impl in impls["vit_register_models"]:
            try:
                infos += list(impl.function())
            except BaseException as exc:
                _reraise_interrupt(exc)
                record.errors.append(f"vit_register_models failed: {_error(exc)}")
                return None
        wrong = [info for info in infos if not isinstance(info, ModelInfo)]
        if wrong:
            record.errors.append(f"vit_register_models must return ModelInfo objects, got {wrong[0]!r:.80}")
            return None
        return infos

    def _add(self, record: PluginRecord, info: ModelInfo) -> None:
        """Register ``info`` and its presets for ``record``'s plugin, applying the reservation rule."""
        base = replace(
            info, plugin=record.name, distribution=record.distribution, version=record.version, preset_of=None
        )
        if not self._claim(record, base):
            return
        record.models.append(base.name)
        for preset_name, preset in base.presets.items():
            try:
                entry = replace(
                    base,
                    name=preset_name,
                    default_config=preset.config,
                    input_shape=preset.input_shape or base.input_shape,
                    summary=preset.summary or base.summary,
                    example=f"from vit_core import create_model\nmodel = create_model({preset_name!r})",
                    presets={},
                    preset_of=base.name,
                )
            except MetadataError as exc:
                record.errors.append(f"preset {preset_name!r} of {base.name!r}: {exc}")
                continue
            if self._claim(record, entry):
                record.presets.append(preset_name)

    def _claim(self, record: PluginRecord, entry: ModelInfo) -> bool:
        name = entry.name
        what = "model" if entry.preset_of is None else f"preset (of {entry.preset_of!r})"
        if entry.qualified_name in self.entries:
            record.errors.append(f"{what} name {name!r} is registered twice by this plugin; kept the first")
            return False
        if record.name == CORE_PLUGIN:  # vit-core added after a plugin (a hand-built registry): evict
            for other in [e for e in self.entries.values() if e.name == name]:
                self._reject(self.plugins[other.plugin], other)
        elif f"{CORE_PLUGIN}:{name}" in self.entries:
            self._reject(record, entry)
            return False
        self.entries[entry.qualified_name] = entry
        return True

    def _reject(self, record: PluginRecord, entry: ModelInfo) -> None:
        """``entry`` claims a vit-core name: record why, and drop it if it was registered."""
        what = "model" if entry.preset_of is None else f"preset (of {entry.preset_of!r})"
        reason = f"{what} name {entry.name!r} is reserved by vit-core; not registered: rename it"
        if self.entries.get(entry.qualified_name) is entry:
            del self.entries[entry.qualified_name]
            for names in (record.models, record.presets):
                if entry.name in names:
                    names.remove(entry.name)
        record.errors.append(reason)
        record.rejected[entry.name] = reason

    def _index(self) -> None:
        """Rebuild the bare-name index and the conflict warnings from ``entries``."""
        by_name: dict[str, list[ModelInfo]] = {}
        for entry in self.entries.values():
            by_name.setdefault(entry.name, []).append(entry)
        self.models = {name: claims[0] for name, claims in by_name.items() if len(claims) == 1}
        self.conflicts = {
            name: sorted(claims, key=lambda e: e.plugin) for name, claims in by_name.items() if len(claims) > 1
        }
        for record in self.plugins.values():
            record.warnings = []
        for name, claims in self.conflicts.items():
            for entry in claims:
                others = ", ".join(
                    f"{o.plugin!r} ({o.distribution} {o.version})".replace(" )", ")") for o in claims if o is not entry
                )
                self.plugins[entry.plugin].warnings.append(
                    f"name {name!r} is also claimed by plugin {others}: no plugin gets the bare name; "
                    f"use {entry.qualified_name!r}"
                )

    def load_entry_points(self, allowlist: str | None = None) -> None:
        """Load every plugin of the entry-point group (filtered by ``allowlist`` / ``$VIT_PLUGINS``).

        Two distributions declaring the same entry-point name are both reported and neither is
        loaded (unless the allowlist, by distribution name, keeps one).
        """
        allowlist = os.environ.get(ALLOWLIST_ENV) if allowlist is None else allowlist
        allowed = None if allowlist is None else {n.strip() for n in allowlist.split(",") if n.strip()}
        groups: dict[str, list[tuple[metadata.EntryPoint, str, str]]] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.module
            groups.setdefault(ep.name, []).append((ep, dist_name, dist.version if dist is not None else ""))
        if allowed is not None:
            known = {n for name, group in groups.items() for n in (name, *(d for _, d, _ in group))}
            self.unmatched_allowlist = sorted(allowed - known)
        for name in sorted(groups):
            chosen = []
            for ep, dist_name, version in sorted(groups[name], key=lambda g: g[1]):
                if allowed is None or name in allowed or dist_name in allowed:
                    chosen.append((ep, dist_name, version))
                else:
                    self.skipped.append(f"{name} ({dist_name})")
            if len(chosen) > 1:
                dists = [f"{d} {v} ({ep.value})".replace("  ", " ") for ep, d, v in chosen]
                record = PluginRecord(name, ", ".join(d for _, d, _ in chosen), "")
                record.errors.append(
                    f"entry point name {name!r} is declared by {len(chosen)} distributions: {'; '.join(dists)}; "
                    f"neither is loaded: uninstall one, or choose one with {ALLOWLIST_ENV}=<distribution>"
                )
                self.plugins[name] = record
            elif chosen:
                self._load_entry_point(*chosen[0])

    def _load_entry_point(self, ep: metadata.EntryPoint, dist_name: str, version: str) -> None:
        reserved = ep.name == CORE_PLUGIN or ":" in ep.name
        if reserved or ep.name in self.plugins:
            record = PluginRecord(ep.name, dist_name, version)
            record.errors.append(
                f"entry point name {ep.name!r} is reserved or malformed (no ':'; 'vit-core' is vit-core's own); "
                "not loaded: rename the entry point"
            )
            self.plugins[f"{ep.name} ({dist_name})"] = record
            return
        try:
            module = ep.load()
        except BaseException as exc:
            _reraise_interrupt(exc)
            record = PluginRecord(ep.name, dist_name, version)
            record.errors.append(f"import of {ep.value} failed: {_error(exc)}")
            self.plugins[ep.name] = record
            return
        self.add_plugin(module, ep.name, dist_name, version)

    # Lookup.

    def info(self, name: str) -> ModelInfo:
        """The entry ``name`` (bare or ``"plugin:name"``), or a :class:`ModelLookupError` saying why not."""
        if ":" in name:
            return self._qualified(name)
        if name in self.models:
            return self.models[name]
        if name in self.conflicts:
            raise AmbiguousModelError(name, self.conflicts[name])
        for record in self.plugins.values():
            if not record.loaded and record.claims and name in record.claims:
                raise FailedPluginError(name, record)
        raise UnknownModelError(name, self._close(name, self.models), self._hints())

    def _qualified(self, name: str) -> ModelInfo:
        plugin, _, bare = name.rpartition(":")
        if name in self.entries:
            return self.entries[name]
        record = self.plugins.get(plugin)
        if record is None:
            known = ", ".join(self.plugins) or "none"
            raise UnknownModelError(name, [], [f"no plugin named {plugin!r} (plugins: {known})"])
        if not record.loaded:
            raise FailedPluginError(bare, record)
        if bare in record.rejected:
            raise UnknownModelError(name, [], [f"plugin {plugin!r} claimed it but {record.rejected[bare]}"])
        own = {e.qualified_name: e for e in self.entries.values() if e.plugin == plugin}
        raise UnknownModelError(name, self._close(name, own))

    @staticmethod
    def _close(name: str, names: Iterable[str]) -> list[str]:
        return difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)

    def _hints(self) -> list[str]:
        """Why a name may be missing: plugins that failed before saying what they hold, allowlist skips."""
        hints = [
            f"plugin {r.name!r} failed to load and may provide it: {r.cause}"
            for r in self.plugins.values()
            if not r.loaded and not r.claims
        ]
        if self.skipped:
            allowlist = os.environ.get(ALLOWLIST_ENV, "")
            hints.append(f"not loaded because of {ALLOWLIST_ENV}={allowlist!r}: {', '.join(self.skipped)}")
        return hints

    def key(self, info: ModelInfo) -> str:
        """The name to ask for ``info`` by: the bare name, or the qualified one when the bare is ambiguous."""
        return info.name if self.models.get(info.name) is info else info.qualified_name

    def saved_as(self, saved: str | None, name: str) -> bool:
        """Whether a checkpoint saved as model ``saved`` is one of ``name``: the same entry, or ``name``
        is a preset of it (``vit train cct-2`` saves a ``cct`` with the preset's configuration)."""
        if saved is None:
            return False
        wanted, found = self.info(name), self.info(saved)
        parent = f"{wanted.plugin}:{wanted.preset_of}" if wanted.preset_of else None
        return found.qualified_name in (wanted.qualified_name, parent)

    def info_for_class(self, cls: type) -> ModelInfo:
        """The (non-preset) entry whose target is ``cls``."""
        target = f"{cls.__module__}:{cls.__qualname__}"
        for info in self.entries.values():
            if info.preset_of is None and (info.target == target or _public_target(info.target) == cls):
                return info
        raise UnknownModelError(cls.__qualname__, [])

    def list(
        self,
        pattern: str | None = None,
        plugin: str | None = None,
        *,
        kind: str | None = None,
        family: str | None = None,
        presets: bool = True,
    ) -> list[ModelInfo]:
        """Entries whose name matches the shell-style ``pattern``, filtered by plugin, kind and family.

        Presets follow their model; ``presets=False`` leaves them out.
        """
        out = [
            info
            for info in self.entries.values()
            if (pattern is None or fnmatch.fnmatchcase(info.name, pattern))
            and (plugin is None or plugin in (info.plugin, info.distribution))
            and (kind is None or info.kind == kind)
            and (family is None or info.family == family)
            and (presets or info.preset_of is None)
        ]
        return sorted(out, key=lambda i: (i.plugin != CORE_PLUGIN, i.plugin, i.preset_of or i.name, i.preset_of or ""))

    # Building.

    def create(self, name: str, **overrides: Any) -> Any:
        """Build ``name`` from its default configuration updated with ``overrides``."""
        return self.create_with_parts(name, **overrides)[0]

    def create_with_parts(self, name: str, **overrides: Any) -> tuple[Any, dict[str, Any]]:
        """``create``, also returning the models built for its :class:`Component` arguments, by argument."""
        return self._assemble(self.info(name), overrides, ())

    def _assemble(self, info: ModelInfo, overrides: Mapping[str, Any], stack: tuple[str, ...]) -> tuple[Any, dict]:
        config = {**info.default_config, **overrides}
        parts = {}
        for arg, value in config.items():
            if not isinstance(value, Component):
                continue
            where = f"{info.describe_origin()}: {arg}={value}"
            try:
                part_info = self.info(value.model)
            except ModelLookupError as exc:
                raise MetadataError(f"{where} names no buildable model: {exc}") from None
            if part_info.qualified_name in stack or part_info is info:
                raise MetadataError(f"{where} builds itself (a cycle of components)")
            parts[arg] = self._assemble(part_info, value.config, (*stack, info.qualified_name))[0]
        return info.load_class()(**{**config, **parts}), parts

    def example_args(self, info: ModelInfo, parts: Mapping[str, Any], batch: int = 1) -> tuple[Any, ...]:
        """Positional arguments of one call on random data: ``(x,)``, or ``(images, labels)`` for a
        trainer with ``takes_labels`` (labels below the ``num_classes`` of the trained component)."""
        x = info.example_input(batch)
        if not info.takes_labels:
            return (x,)
        import torch

        trained = [parts[arg] for arg, c in info.components.items() if c.trained and arg in parts]
        num_classes = getattr(trained[0], "num_classes", None) if trained else None
        if not isinstance(num_classes, int) or num_classes < 1:
            raise MetadataError(f"{info.describe_origin()} takes labels but its trained component has no num_classes")
        return x, torch.randint(0, num_classes, (batch,))


def _public_target(target: str) -> Any:
    try:
        return resolve(target)
    except Exception:
        return None


def _core_version() -> str:
    from vit_core import __version__

    return __version__


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use: the core's models, then every allowed plugin."""
    global _REGISTRY
    if _REGISTRY is None:
        from vit_core.registry import core_models as core_plugin

        registry = Registry()
        registry.add_plugin(core_plugin, CORE_PLUGIN, CORE_PLUGIN, _core_version())
        registry.load_entry_points()
        _REGISTRY = registry
    return _REGISTRY


def reset_registry() -> None:
    """Forget the registry (it is rebuilt, with fresh entry points, on next use)."""
    global _REGISTRY
    _REGISTRY = None


def create_model(name: str, **overrides: Any) -> Any:
    """Build the registered entry ``name`` (a model, trainer, backend or preset; bare or ``"plugin:name"``)
    from its default configuration updated with ``overrides``."""
    return get_registry().create(name, **overrides)


def list_models(
    pattern: str | None = None,
    plugin: str | None = None,
    *,
    kind: str | None = None,
    family: str | None = None,
    presets: bool = True,
) -> list[str]:
    """Names to build (``create_model``) of the entries matching ``pattern`` (shell wildcards) and the filters.

    A name several plugins claim is returned qualified (``"plugin:name"``).
    """
    registry = get_registry()
    return [registry.key(i) for i in registry.list(pattern, plugin, kind=kind, family=family, presets=presets)]


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: Any, *args: Any) -> int:
    """FLOPs of one forward pass on ``args`` (``torch.utils.flop_counter``).

    Attention runs on SDPA's math backend while counting, so that its matrix products are counted on
    every device (the fused CPU kernel has no FLOP formula and would count as zero).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(*args)
    return int(counter.get_total_flops())


def human(n: float) -> str:
    if n <= 0:
        return "0"
    exp = min(int(math.log10(n) // 3), 4)
    return f"{n / 10 ** (3 * exp):.3g}{['', 'K', 'M', 'G', 'T'][exp]}"
