"""Naming and lookup: the entries of every loaded plugin by name, under the rules that keep names unique.

Models and presets share one namespace:

* vit-core's names are reserved: a plugin claiming one gets an error and is not registered under it;
* every entry is reachable under its qualified name ``"plugin:name"``;
* a bare name claimed by several plugins belongs to none of them: looking it up is an error listing
  the claimants.  The outcome does not depend on the order plugins are loaded in.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from vit_core.registry.errors import AmbiguousModelError, FailedPluginError, UnknownModelError
from vit_core.registry.plugins import ALLOWLIST_ENV, CORE_PLUGIN, PluginRecord
from vit_core.registry.schema import MetadataError, ModelInfo, resolve


class NameIndex:
    """The registered entries (models, trainers, backends and presets) by name, and the plugins that hold them."""

    def __init__(self) -> None:
        self.entries: dict[str, ModelInfo] = {}
        """Every registered entry by qualified name ``"plugin:name"``."""
        self.models: dict[str, ModelInfo] = {}
        """Entries by bare name, for names exactly one plugin claims."""
        self.conflicts: dict[str, list[ModelInfo]] = {}
        """Bare names several plugins claim (reachable only qualified)."""
        self.plugins: dict[str, PluginRecord] = {}
        """Every plugin's record by name, loaded or not."""
        self.skipped: list[str] = []
        """Entry points the allowlist kept from loading."""

    def register(self, record: PluginRecord, infos: Iterable[ModelInfo]) -> None:
        """Register a loaded plugin's entries and their presets under the naming rules (problems go to ``record``)."""
        for info in infos:
            self._add(record, info)
        self._index()

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


def _public_target(target: str) -> Any:
    try:
        return resolve(target)
    except Exception:
        return None
