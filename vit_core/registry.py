"""The model registry: metadata of every model of every installed plugin.

Plugins are discovered through the entry-point group ``vit_core.plugins``.  Each entry point is
loaded in isolation: one that fails to import, names an unknown hook, targets another hook API
version, or registers a name another plugin already holds is recorded with its error and
skipped, never fatal.  ``VIT_PLUGINS`` (comma-separated entry-point or distribution names)
allowlists plugins before any entry point is loaded; set and empty, it loads none.  The core's
own models register through the same hooks (they are always present).

Metadata is plain data: models are named by ``"module:attr"`` targets and imported only when
built or described, so ``vit list`` does not import torch.
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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import pluggy

from vit_core.hookspecs import ENTRY_POINT_GROUP, HOOK_API_VERSION, PROJECT, VitHookSpecs

INPUT_KINDS = {
    "image": "(batch, channels, height, width)",
    "video": "(batch, channels, frames, height, width)",
    "image-list": "list of (channels, height, width) images of any size",
}
ALLOWLIST_ENV = "VIT_PLUGINS"
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class UnknownModelError(KeyError):
    """No model of that name; ``matches`` holds close names."""

    def __init__(self, name: str, matches: list[str]) -> None:
        self.name, self.matches = name, matches
        hint = f"; did you mean {', '.join(matches)}?" if matches else "; run `vit list` to see them"
        super().__init__(f"unknown model {name!r}{hint}")

    def __str__(self) -> str:
        return self.args[0]


class MetadataError(ValueError):
    """A plugin registered incomplete or malformed metadata."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything ``vit list`` and ``vit describe`` show about one model.

    Attributes:
        name: kebab-case registry name (``"vit"``, ``"simple-vit"``).
        target: ``"module:attr"`` of the model class or factory.
        family: grouping such as ``"vit"``, ``"hierarchical"``, ``"video"``.
        paper_title, paper_url: the paper the model implements.
        summary: one line on what the model changes.
        input_kind: ``"image"``, ``"video"`` or ``"image-list"``.
        default_config: keyword arguments of a small configuration that builds in about a second.
        input_shape: one sample's shape for the default configuration, e.g. ``(3, 32, 32)``.
        num_params: parameter count of the default configuration (checked by the test suite).
        citation: BibTeX of the paper.
        example: a short Python example.
        importer: ``"module:function"`` converting a vit-pytorch state dict (see ``vit_core.weights``).
        reference: the vit-pytorch class the model mirrors, e.g. ``"vit_pytorch.vit.ViT"``.
        plugin, distribution, version: filled in by the registry.
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
    num_params: int
    citation: str = ""
    example: str = ""
    importer: str | None = None
    reference: str | None = None
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            problems.append(f"name must be kebab-case (e.g. 'my-vit'), got {self.name!r}")
        for attr in ("target", "importer"):
            value = getattr(self, attr)
            if (value is not None or attr == "target") and not (isinstance(value, str) and _TARGET.match(value)):
                problems.append(f"{attr} must be a 'module:attr' string, got {value!r}")
        for attr in ("family", "paper_title", "summary"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                problems.append(f"{attr} must be a non-empty string")
        if not isinstance(self.paper_url, str) or not self.paper_url.startswith(("http://", "https://")):
            problems.append(f"paper_url must be an http(s) link, got {self.paper_url!r}")
        if self.input_kind not in INPUT_KINDS:
            problems.append(f"input_kind must be one of {sorted(INPUT_KINDS)}, got {self.input_kind!r}")
        if not isinstance(self.default_config, Mapping):
            problems.append("default_config must be a mapping of constructor arguments")
        shape = self.input_shape
        if not (isinstance(shape, tuple) and shape and all(isinstance(s, int) and s > 0 for s in shape)):
            problems.append(f"input_shape must be a tuple of positive ints, got {shape!r}")
        if isinstance(self.num_params, bool) or not isinstance(self.num_params, int) or self.num_params <= 0:
            problems.append(f"num_params must be a positive int, got {self.num_params!r}")
        if problems:
            raise MetadataError(f"model {self.name!r}: " + "; ".join(problems))

    @property
    def input_layout(self) -> str:
        return INPUT_KINDS[self.input_kind]

    def load_class(self) -> Any:
        return resolve(self.target)

    def signature(self) -> inspect.Signature:
        return inspect.signature(self.load_class())

    def build(self, **overrides: Any) -> Any:
        return self.load_class()(**{**self.default_config, **overrides})

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
    """What ``vit plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    api_version: int | None = None
    models: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Registry:
    """Models and plugins known to this process."""

    def __init__(self) -> None:
        self.models: dict[str, ModelInfo] = {}
        self.plugins: dict[str, PluginRecord] = {}
        self.skipped: list[str] = []
        """Entry points the allowlist kept from loading."""
        self._manager = pluggy.PluginManager(PROJECT)
        self._manager.add_hookspecs(VitHookSpecs)

    def add_plugin(
        self, plugin: ModuleType | object, name: str, distribution: str = "", version: str = ""
    ) -> PluginRecord:
        """Register one plugin object's hooks and its models; failures are recorded, not raised."""
        record = PluginRecord(name, distribution or name, version)
        self.plugins[name] = record
        try:
            self._manager.register(plugin, name=name)
            self._manager.check_pending()
        except Exception as exc:
            record.errors.append(f"invalid hooks: {_error(exc)}")
            self._manager.unregister(name=name)
            return record
        impls = {
            hook: [i for i in getattr(self._manager.hook, hook).get_hookimpls() if i.plugin_name == name]
            for hook in ("vit_api_version", "vit_register_models")
        }
        try:
            record.api_version = impls["vit_api_version"][0].function() if impls["vit_api_version"] else None
        except Exception as exc:
            record.errors.append(f"vit_api_version failed: {_error(exc)}")
            return self._drop(record)
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
            return self._drop(record)
        for impl in impls["vit_register_models"]:
            try:
                infos = list(impl.function())
                for info in infos:
                    if not isinstance(info, ModelInfo):
                        raise MetadataError(f"vit_register_models must return ModelInfo objects, got {info!r:.80}")
            except Exception as exc:
                record.errors.append(f"vit_register_models failed: {_error(exc)}")
                return self._drop(record)
            for info in infos:
                self._add_model(record, info)
        return record

    def _drop(self, record: PluginRecord) -> PluginRecord:
        self._manager.unregister(name=record.name)
        return record

    def _add_model(self, record: PluginRecord, info: ModelInfo) -> None:
        held = self.models.get(info.name)
        if held is not None:
            record.errors.append(
                f"model name {info.name!r} is registered by both plugin {held.plugin!r} ({held.distribution}) and "
                f"plugin {record.name!r} ({record.distribution}); kept {held.plugin!r}'s, skipped {record.name!r}'s"
            )
            return
        self.models[info.name] = replace(
            info, plugin=record.name, distribution=record.distribution, version=record.version
        )
        record.models.append(info.name)

    def load_entry_points(self, allowlist: str | None = None) -> None:
        """Load every plugin of the entry-point group (filtered by ``allowlist`` / ``$VIT_PLUGINS``)."""
        allowlist = os.environ.get(ALLOWLIST_ENV) if allowlist is None else allowlist
        allowed = None if allowlist is None else {n.strip() for n in allowlist.split(",") if n.strip()}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.module
            if allowed is not None and ep.name not in allowed and dist_name not in allowed:
                self.skipped.append(f"{ep.name} ({dist_name})")
                continue
            if ep.name in self.plugins:
                self.plugins[ep.name].errors.append(
                    f"entry point name {ep.name!r} is also used by distribution {dist_name}; skipped"
                )
                continue
            try:
                module = ep.load()
            except BaseException as exc:  # a plugin may even call sys.exit on import
                if isinstance(exc, KeyboardInterrupt):
                    raise
                record = PluginRecord(ep.name, dist_name, dist.version if dist else "")
                record.errors.append(f"import of {ep.value} failed: {_error(exc)}")
                self.plugins[ep.name] = record
                continue
            self.add_plugin(module, ep.name, dist_name, dist.version if dist else "")

    def info(self, name: str) -> ModelInfo:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModelError(name, difflib.get_close_matches(name, list(self.models), n=3, cutoff=0.5)) from None

    def info_for_class(self, cls: type) -> ModelInfo:
        target = f"{cls.__module__}:{cls.__qualname__}"
        for info in self.models.values():
            if info.target == target or _public_target(info.target) == cls:
                return info
        raise UnknownModelError(cls.__qualname__, [])

    def list(self, pattern: str | None = None, plugin: str | None = None) -> list[ModelInfo]:
        """Models whose name matches the shell-style ``pattern``, optionally from one ``plugin``."""
        out = [
            info
            for info in self.models.values()
            if (pattern is None or fnmatch.fnmatchcase(info.name, pattern))
            and (plugin is None or plugin in (info.plugin, info.distribution))
        ]
        return sorted(out, key=lambda i: (i.plugin != "vit-core", i.plugin, i.name))

    def create(self, name: str, **overrides: Any) -> Any:
        return self.info(name).build(**overrides)


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
        from vit_core import plugin as core_plugin

        registry = Registry()
        registry.add_plugin(core_plugin, "vit-core", "vit-core", _core_version())
        registry.load_entry_points()
        _REGISTRY = registry
    return _REGISTRY


def reset_registry() -> None:
    """Forget the registry (it is rebuilt, with fresh entry points, on next use)."""
    global _REGISTRY
    _REGISTRY = None


def create_model(name: str, **overrides: Any) -> Any:
    """Build the registered model ``name`` from its default configuration updated with ``overrides``."""
    return get_registry().create(name, **overrides)


def list_models(pattern: str | None = None, plugin: str | None = None) -> list[str]:
    """Names of the registered models matching ``pattern`` (shell wildcards), optionally of one ``plugin``."""
    return [info.name for info in get_registry().list(pattern, plugin)]


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: Any, example: Any) -> int:
    """FLOPs of one forward pass on ``example`` (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops())


def human(n: float) -> str:
    if n <= 0:
        return "0"
    exp = min(int(math.log10(n) // 3), 4)
    return f"{n / 10 ** (3 * exp):.3g}{['', 'K', 'M', 'G', 'T'][exp]}"
