"""The model registry: metadata of every model, trainer and backend of every installed plugin.

One :class:`Registry` per process (:func:`get_registry`) holds vit-core's own entries
(:mod:`~vit_core.registry.core_models`) and those of every allowed plugin of the entry-point group
``vit_core.plugins``.  The package is laid out by concern:

* :mod:`~vit_core.registry.schema`: what a plugin registers (``ModelInfo``, ``Preset``, ``Component``)
  and its validation;
* :mod:`~vit_core.registry.plugins`: loading plugins in isolation, their hooks, the hook API version
  check and the ``VIT_PLUGINS`` allowlist;
* :mod:`~vit_core.registry.lookup`: the naming rules and lookup by name;
* :mod:`~vit_core.registry.errors`: the errors of a lookup that fails;
* :mod:`~vit_core.registry.components`: building an entry with the models its configuration names.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
from types import ModuleType
from typing import Any

from vit_core import __version__ as core_version
from vit_core.registry.components import Assembly
from vit_core.registry.errors import AmbiguousModelError, FailedPluginError, ModelLookupError, UnknownModelError
from vit_core.registry.plugins import (
    ALLOWLIST_ENV,
    CORE_PLUGIN,
    PluginHooks,
    PluginRecord,
    claimed_names,
    describe_error,
    installed_plugins,
    parse_allowlist,
    reraise_interrupt,
)
from vit_core.registry.schema import (
    INPUT_KINDS,
    KINDS,
    Component,
    MetadataError,
    ModelInfo,
    Preset,
    TargetImportError,
    resolve,
)

__all__ = [
    "ALLOWLIST_ENV",
    "CORE_PLUGIN",
    "INPUT_KINDS",
    "KINDS",
    "AmbiguousModelError",
    "Component",
    "FailedPluginError",
    "MetadataError",
    "ModelInfo",
    "ModelLookupError",
    "PluginRecord",
    "Preset",
    "Registry",
    "TargetImportError",
    "UnknownModelError",
    "create_model",
    "get_registry",
    "list_models",
    "reset_registry",
    "resolve",
    "set_registry",
]


class Registry(Assembly):
    """Models, trainers, backends and presets (entries) and the plugins known to this process."""

    def __init__(self) -> None:
        super().__init__()
        self.unmatched_allowlist: list[str] = []
        """``VIT_PLUGINS`` items that name no installed plugin."""
        self._hooks = PluginHooks()

    def add_plugin(
        self, plugin: ModuleType | object, name: str, distribution: str = "", version: str = ""
    ) -> PluginRecord:
        """Register one plugin object's hooks and its entries; failures are recorded, not raised."""
        if name in self.plugins:
            raise ValueError(f"a plugin named {name!r} is already registered")
        record = PluginRecord(name, distribution or name, version)
        self.plugins[name] = record
        infos = self._hooks.load(plugin, record)
        if infos is None:
            record.claims = claimed_names(plugin)
            return record
        record.loaded = True
        self.register(record, infos)
        return record

    def load_entry_points(self, allowlist: str | None = None) -> None:
        """Load every plugin of the entry-point group (filtered by ``allowlist`` / ``$VIT_PLUGINS``).

        Two distributions declaring the same entry-point name are both reported and neither is
        loaded (unless the allowlist, by distribution name, keeps one).
        """
        allowed = parse_allowlist(os.environ.get(ALLOWLIST_ENV) if allowlist is None else allowlist)
        groups = installed_plugins()
        if allowed is not None:
            known = {n for name, group in groups.items() for n in (name, *(g.distribution for g in group))}
            self.unmatched_allowlist = sorted(allowed - known)
        for name in sorted(groups):
            chosen = []
            for found in groups[name]:
                if allowed is None or name in allowed or found.distribution in allowed:
                    chosen.append(found)
                else:
                    self.skipped.append(f"{name} ({found.distribution})")
            if len(chosen) > 1:
                dists = [f"{d} {v} ({ep.value})".replace("  ", " ") for ep, d, v in chosen]
                record = PluginRecord(name, ", ".join(c.distribution for c in chosen), "")
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
            reraise_interrupt(exc)
            record = PluginRecord(ep.name, dist_name, version)
            record.errors.append(f"import of {ep.value} failed: {describe_error(exc)}")
            self.plugins[ep.name] = record
            return
        self.add_plugin(module, ep.name, dist_name, version)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use: the core's models, then every allowed plugin."""
    global _registry
    if _registry is None:
        from vit_core.registry import core_models

        registry = Registry()
        registry.add_plugin(core_models, CORE_PLUGIN, CORE_PLUGIN, core_version)
        registry.load_entry_points()
        _registry = registry
    return _registry


def set_registry(registry: Registry | None) -> Registry | None:
    """Make ``registry`` the process-wide one (``None``: rebuilt on next use); return the one it replaces.

    For tests and programs that fill a :class:`Registry` by hand: ``get_registry``, ``create_model``
    and every command see it until it is replaced or reset.
    """
    global _registry
    if registry is not None and not isinstance(registry, Registry):
        raise TypeError(f"registry must be a Registry or None, got {type(registry).__name__}")
    previous, _registry = _registry, registry
    return previous


def reset_registry() -> None:
    """Forget the registry (it is rebuilt, with fresh entry points, on next use)."""
    set_registry(None)


def create_model(name: str, pretrained: str | os.PathLike[str] | None = None, **overrides: Any) -> Any:
    """Build the registered entry ``name`` (a model, trainer, backend or preset; bare or ``"plugin:name"``)
    from its default configuration updated with ``overrides``.

    ``pretrained``: a local weights file or folder (timm, Hugging Face, vit-core) loaded with
    :func:`vit_core.load_pretrained` as the architecture ``name`` (a bare timm weights file takes its shape
    from ``name``; a checkpoint that describes itself must agree with it); ``overrides`` are then those
    ``load_pretrained`` accepts (``num_classes``, ``image_size``, ...).  Nothing is downloaded."""
    if pretrained is None:
        return get_registry().create(name, **overrides)
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be a path to a local weights file or folder, got {pretrained!r}")
    from vit_core.interop.pretrained import load_pretrained

    return load_pretrained(pretrained, arch=name, **overrides)


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
