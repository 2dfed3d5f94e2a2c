"""Plugin loading: the record of each plugin, its hooks checked and called, entry points discovered.

Plugins are discovered through the entry-point group ``vit_core.plugins``.  Each is loaded in
isolation: one that fails to import, names an unknown hook, targets a hook API version outside
:data:`~vit_core.hookspecs.SUPPORTED_API_VERSIONS` or registers malformed metadata is recorded with
its error (:class:`PluginRecord`) and skipped, never fatal; the names it would have registered are
remembered where they can be learned (:func:`claimed_names`).  ``VIT_PLUGINS`` (comma-separated
entry-point or distribution names) allowlists plugins before any entry point is loaded; set and
empty, it loads none.
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pluggy

from vit_core import __version__ as core_version
from vit_core import hookspecs
from vit_core.hookspecs import ENTRY_POINT_GROUP, HOOK_API_VERSION, HOOK_NAMES, PROJECT, VitHookSpecs
from vit_core.registry.schema import ModelInfo

CORE_PLUGIN = "vit-core"
"""The plugin name of vit-core's own models; its names are reserved."""
ALLOWLIST_ENV = "VIT_PLUGINS"
"""The environment variable naming the plugins (entry-point or distribution names) allowed to load."""


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


def reraise_interrupt(exc: BaseException) -> None:
    """Plugin code may raise anything, even ``SystemExit``; only an interrupt stops the host."""
    if isinstance(exc, KeyboardInterrupt):
        raise exc


def describe_error(exc: BaseException) -> str:
    """``"Type: message (file:line)"`` of an exception raised by plugin code, for a record's errors."""
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


def hook_problems(plugin: object) -> list[str]:
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


def claimed_names(plugin: object) -> list[str] | None:
    """The names a plugin's ``vit_register_models`` returns, learned without trusting the plugin."""
    hook = getattr(plugin, "vit_register_models", None)
    if not callable(hook):
        return None
    try:
        infos = list(hook())
    except BaseException as exc:
        reraise_interrupt(exc)
        return None
    names = []
    for info in infos:
        if isinstance(info, ModelInfo):
            names += [info.name, *info.presets]
    return names or None


def api_version_problem(record: PluginRecord) -> str | None:
    """Why the hook API version ``record``'s plugin states keeps it from loading (``None``: supported).

    The message names the plugin, the version it states and the versions this vit-core supports.
    """
    version, supported = record.api_version, hookspecs.SUPPORTED_API_VERSIONS
    if type(version) is int and version in supported:
        return None
    plugin, versions = f"plugin {record.name!r}", hookspecs.describe_api_versions()
    host = f"vit-core {core_version} supports hook API {versions}"
    if version is None:
        return (
            f"{plugin} does not implement vit_api_version(); {host}: implement vit_api_version() returning the "
            "version the plugin was written for"
        )
    if type(version) is not int:
        return f"{plugin}: vit_api_version() returned {version!r}, not an int; {host}"
    if version < supported.start:
        fix = f"port the plugin to hook API version {HOOK_API_VERSION}, or use the older vit-core it was written for"
    else:
        fix = f"upgrade vit-core, or install a release of the plugin written for hook API {versions}"
    return f"{plugin} targets hook API version {version}, but {host}: {fix}"


class PluginHooks:
    """The pluggy manager of one registry: registers a plugin's hooks, checks them and calls them."""

    def __init__(self) -> None:
        self._manager = pluggy.PluginManager(PROJECT)
        self._manager.add_hookspecs(VitHookSpecs)

    def load(self, plugin: object, record: PluginRecord) -> list[ModelInfo] | None:
        """The plugin's ModelInfo objects, or ``None`` (errors recorded, hooks unregistered) when it cannot load."""
        infos = self._call(plugin, record)
        if infos is None and self._manager.has_plugin(record.name):
            self._manager.unregister(name=record.name)
        return infos

    def _call(self, plugin: object, record: PluginRecord) -> list[ModelInfo] | None:
        record.errors += hook_problems(plugin)
        try:
            self._manager.register(plugin, name=record.name)
            self._manager.check_pending()
        except Exception as exc:
            unknown = re.search(r"unknown hook '(\w+)'", str(exc))
            hint = _did_you_mean(unknown.group(1)) if unknown else ""
            record.errors.append(f"invalid hooks: {describe_error(exc)}{hint}")
            return None
        impls = {
            hook: [i for i in getattr(self._manager.hook, hook).get_hookimpls() if i.plugin_name == record.name]
            for hook in HOOK_NAMES
        }
        try:
            record.api_version = impls["vit_api_version"][0].function() if impls["vit_api_version"] else None
        except BaseException as exc:
            reraise_interrupt(exc)
            record.errors.append(f"vit_api_version failed: {describe_error(exc)}")
            return None
        problem = api_version_problem(record)
        if problem is not None:
            record.errors.append(problem)
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
                reraise_interrupt(exc)
                record.errors.append(f"vit_register_models failed: {describe_error(exc)}")
                return None
        wrong = [info for info in infos if not isinstance(info, ModelInfo)]
        if wrong:
            record.errors.append(f"vit_register_models must return ModelInfo objects, got {wrong[0]!r:.80}")
            return None
        return infos


class InstalledPlugin(NamedTuple):
    """One entry point of the group and the distribution that declares it."""

    entry_point: metadata.EntryPoint
    distribution: str
    version: str


def installed_plugins() -> dict[str, list[InstalledPlugin]]:
    """Every entry point of the ``vit_core.plugins`` group by name (several where distributions collide),
    each name's declarations sorted by distribution."""
    groups: dict[str, list[InstalledPlugin]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found = InstalledPlugin(
            ep, dist.metadata["Name"] if dist is not None else ep.module, dist.version if dist is not None else ""
        )
        groups.setdefault(ep.name, []).append(found)
    return {name: sorted(group, key=lambda g: g.distribution) for name, group in groups.items()}


def parse_allowlist(allowlist: str | None) -> set[str] | None:
    """The names a ``VIT_PLUGINS`` value allows (``None``: unset, everything is allowed)."""
    return None if allowlist is None else {n.strip() for n in allowlist.split(",") if n.strip()}
