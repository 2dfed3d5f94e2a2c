"""``vit list`` and ``vit plugins``: what the installed plugins register, from metadata alone (no torch).

Both warn on stderr, one line each, about plugins that failed to load, names several plugins claim
and ``VIT_PLUGINS`` entries that name nothing (:func:`warn_registry`).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.text import Text

from vit_core.cli.output import Column, console, dumps, errors, fail, print_rows
from vit_core.registry import ALLOWLIST_ENV, KINDS, ModelInfo, Registry, get_registry

LIST_COLUMNS = (
    Column("name"),
    Column("kind", drop=5),
    Column("preset of", drop=4),
    Column("plugin", drop=3),
    Column("family", drop=0),
    Column("input", drop=1),
    Column("paper", drop=2),
)
"""``vit list``'s table; on a narrow screen family goes first, then input, paper, plugin, preset of, kind."""
PLUGIN_COLUMNS = (
    Column("plugin"),
    Column("distribution", drop=1),
    Column("version", drop=2),
    Column("api", drop=0),
    Column("registers", shorten=True, min_width=40),
    Column("status"),
)
"""``vit plugins``' table; on a narrow screen api, distribution and version go (in that order) while
``registers`` would get under 40 columns, which is then shortened to fit."""


def info_dict(registry: Registry, info: ModelInfo) -> dict[str, Any]:
    """The JSON record of one entry in ``vit list --json`` (and the start of ``vit describe --json``'s)."""
    return {
        "name": registry.key(info),
        "qualified_name": info.qualified_name,
        "kind": info.kind,
        "preset_of": info.preset_of,
        "plugin": info.plugin,
        "distribution": info.distribution,
        "version": info.version,
        "family": info.family,
        "input_kind": info.input_kind,
        "input_shape": list(info.input_shape),
        "paper_title": info.paper_title,
        "paper_url": info.paper_url,
        "summary": info.summary,
        "target": info.target,
        "default_config": dict(info.default_config),
        "presets": list(info.presets),
        "components": {arg: c.to_json() for arg, c in info.components.items()},
        "takes_labels": info.takes_labels,
        "channels_arg": info.channels_arg,
        "size_arg": info.size_arg,
        "frames_arg": info.frames_arg,
        "plugs_into": info.plugs_into.to_json() if info.plugs_into else None,
        "reference": info.reference,
        "reference_config": dict(info.reference_config),
        "ambiguous": info.name in registry.conflicts,
    }


def warn_registry(registry: Registry) -> None:
    """One stderr line each: plugins that failed, shared names, allowlist entries naming nothing."""
    failed = [p.name for p in registry.plugins.values() if not p.loaded]
    if failed:
        errors.print(
            f"[yellow]{len(failed)} plugin(s) failed to load: {', '.join(failed)} (see `vit plugins`)[/yellow]"
        )
    partial = [p.name for p in registry.plugins.values() if p.loaded and not p.ok]
    if partial:
        errors.print(
            f"[yellow]{len(partial)} plugin(s) loaded with errors: {', '.join(partial)} (see `vit plugins`)[/yellow]"
        )
    for name, claims in registry.conflicts.items():
        use = " or ".join(c.qualified_name for c in claims)
        errors.print(f"[yellow]name {name!r} is claimed by several plugins; use {use}[/yellow]")
    if registry.unmatched_allowlist:
        installed = sorted({p.split(" (")[0] for p in registry.skipped} | set(registry.plugins) - {"vit-core"})
        errors.print(
            f"[yellow]{ALLOWLIST_ENV} names {', '.join(map(repr, registry.unmatched_allowlist))}, which match no "
            f"installed plugin (entry-point or distribution name); installed: {', '.join(installed) or 'none'}"
            "[/yellow]"
        )


def _check_filters(registry: Registry, plugin: str | None, family: str | None, kind: str | None) -> None:
    """A filter value that no entry could match is an error that lists the valid values."""
    if kind is not None and kind not in KINDS:
        fail(f"no kind {kind!r}; kinds: {', '.join(KINDS)}")
    if plugin is not None:
        names = {r.name for r in registry.plugins.values()} | {r.distribution for r in registry.plugins.values()}
        if plugin not in names:
            fail(f"no plugin {plugin!r} is loaded; plugins: {', '.join(registry.plugins)}")
        record = next((r for r in registry.plugins.values() if plugin in (r.name, r.distribution)), None)
        if record is not None and not record.loaded:
            fail(f"plugin {plugin!r} failed to load, so it lists nothing: {record.cause}")
    if family is not None:
        families = sorted({i.family for i in registry.entries.values()})
        if family not in families:
            fail(f"no family {family!r}; families: {', '.join(families)}")


def list_command(
    pattern: Annotated[str | None, typer.Argument(help="Shell-style wildcard on the name, e.g. 'vit*'.")] = None,
    plugin: Annotated[str | None, typer.Option("--plugin", "-p", help="Only entries of this plugin.")] = None,
    family: Annotated[str | None, typer.Option("--family", "-f", help="Only entries of this family.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=f"Only this kind: {', '.join(KINDS)}.")] = None,
    presets: Annotated[bool, typer.Option(help="Include named architecture presets.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every registered model, trainer, backend and preset: name, kind, plugin, family, input, paper.

    One line per entry: a narrow terminal drops the family, input, paper and plugin columns in that
    order; piped (not a terminal), plain lines, fitted to COLUMNS when it is set. Exits 1 (with a
    message on stderr) when nothing matches.
    """
    registry = get_registry()
    _check_filters(registry, plugin, family, kind)
    infos = registry.list(pattern, plugin, kind=kind, family=family, presets=presets)
    if as_json:
        print(dumps([info_dict(registry, i) for i in infos]))
    elif infos:
        _print_table(registry, infos)
    warn_registry(registry)
    if not infos:
        filters = [f"{k}={v!r}" for k, v in (("plugin", plugin), ("family", family), ("kind", kind)) if v is not None]
        what = f"matches {pattern!r}" if pattern is not None else "is registered"
        fail(f"no entry {what}" + (f" with {', '.join(filters)}" if filters else "") + "; run `vit list` for all")


def _print_table(registry: Registry, infos: list[ModelInfo]) -> None:
    n_presets = sum(i.preset_of is not None for i in infos)
    counts = [(sum(i.kind == kind and i.preset_of is None for i in infos), kind) for kind in KINDS]
    parts = [f"{n} {kind}{'s' * (n != 1)}" for n, kind in [*counts, (n_presets, "preset")] if n]
    title = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    columns = [c for c in LIST_COLUMNS if n_presets or c.header != "preset of"]
    rows = []
    for info in infos:
        row = {
            "name": registry.key(info),
            "kind": info.kind,
            "preset of": info.preset_of or "",
            "plugin": info.plugin,
            "family": info.family,
            "input": info.input_kind,
            "paper": short_paper(info.paper_url),
        }
        rows.append([row[c.header] for c in columns])
    print_rows(columns, rows, title)


def short_paper(url: str) -> str:
    """``https://arxiv.org/abs/2010.11929`` -> ``arXiv:2010.11929``; other links unchanged."""
    prefix = "https://arxiv.org/abs/"
    return "arXiv:" + url[len(prefix) :] if url.startswith(prefix) else url


def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Installed plugins: version, hook API version, what each registers, load errors and name conflicts."""
    from vit_core import __version__
    from vit_core.hookspecs import HOOK_API_VERSION, describe_api_versions

    registry = get_registry()
    records = list(registry.plugins.values())
    if as_json:
        print(dumps([r.to_json() for r in records]))
        warn_registry(registry)
        return
    console.print(
        f"vit-core {__version__}, hook API version {HOOK_API_VERSION} (loads plugins of {describe_api_versions()})"
    )
    rows = []
    for r in records:
        status = Text("ok", style="green") if r.ok else Text(f"{len(r.errors)} error(s)", style="red")
        if r.warnings:
            status.append(", ").append(f"{len(r.warnings)} warning(s)", style="yellow")
        registers = ", ".join(r.models) + (f" (+{len(r.presets)} presets)" if r.presets else "")
        rows.append([r.name, r.distribution, r.version, str(r.api_version or "-"), registers or "-", status])
    print_rows(PLUGIN_COLUMNS, rows)
    if registry.skipped:
        allowlist = os.environ.get(ALLOWLIST_ENV, "")
        console.print(f"not loaded ({ALLOWLIST_ENV}={allowlist!r}): {', '.join(registry.skipped)}", markup=False)
    for r in records:
        where = f"plugin {r.name} ({r.distribution} {r.version})".replace(" )", ")")
        for label, messages in (("[red]error[/red]", r.errors), ("[yellow]warning[/yellow]", r.warnings)):
            for message in messages:
                console.print(f"{label} in {where}: ", end="")
                console.print(message, markup=False, highlight=False)
    warn_registry(registry)
