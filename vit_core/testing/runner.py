"""Running the kit: :func:`check_model` and :func:`check_plugin`, and choosing what to run in a test suite
(:func:`model_names`, :func:`parametrize_models`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from vit_core.registry import Registry, get_registry
from vit_core.testing.profiles import OPTIONAL_CHECKS, PROFILES
from vit_core.testing.subject import ConformanceError, Subject


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
