"""The ``vit`` command line: list, describe and inspect the models of every installed plugin.

Only ``vit describe`` imports torch (to build the default configuration and count parameters
and FLOPs); ``vit --help``, ``vit list`` and ``vit plugins`` read metadata only.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from vit_core.registry import ALLOWLIST_ENV, ModelInfo, UnknownModelError, get_registry, human

app = typer.Typer(
    name="vit",
    help="Vision transformers: list, describe and inspect the models of every installed plugin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True)


def _info_dict(info: ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name,
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
        "num_params": info.num_params,
        "reference": info.reference,
    }


@app.command("list")
def list_command(
    pattern: Annotated[str | None, typer.Argument(help="Shell-style wildcard on the name, e.g. 'vit*'.")] = None,
    plugin: Annotated[str | None, typer.Option("--plugin", "-p", help="Only models of this plugin.")] = None,
    family: Annotated[str | None, typer.Option("--family", "-f", help="Only models of this family.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every registered model: name, plugin, family, input kind, paper."""
    registry = get_registry()
    infos = [i for i in registry.list(pattern, plugin) if family is None or i.family == family]
    if as_json:
        print(json.dumps([_info_dict(i) for i in infos], indent=2))
        return
    table = Table(title=f"{len(infos)} models", title_justify="left")
    for column in ("name", "plugin", "family", "input", "paper"):
        table.add_column(column, overflow="fold")
    for info in infos:
        table.add_row(info.name, info.plugin, info.family, info.input_kind, _short_paper(info.paper_url))
    console.print(table)
    broken = [p for p in registry.plugins.values() if not p.ok]
    if broken:
        errors.print(
            f"[yellow]{len(broken)} plugin(s) failed to load: {', '.join(p.name for p in broken)} "
            "(see `vit plugins`)[/yellow]"
        )


def _short_paper(url: str) -> str:
    """``https://arxiv.org/abs/2010.11929`` -> ``arXiv:2010.11929``; other links unchanged."""
    prefix = "https://arxiv.org/abs/"
    return "arXiv:" + url[len(prefix) :] if url.startswith(prefix) else url


def _measure(info: ModelInfo) -> tuple[int, int | None]:
    """Parameters and FLOPs of the default configuration (FLOPs ``None`` where counting fails)."""
    from vit_core.registry import count_flops, count_parameters

    with warnings.catch_warnings():  # torch warns once when numpy, which we do not need, is absent
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
        model = info.build()
        try:
            flops = count_flops(model, info.example_input(1))
        except Exception:
            flops = None
    return count_parameters(model), flops


@app.command()
def describe(
    name: Annotated[str, typer.Argument(help="Registered model name (see `vit list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    measure: Annotated[
        bool, typer.Option(help="Build the default configuration to count parameters and FLOPs.")
    ] = True,
) -> None:
    """Summary, paper, citation, signature, parameters and FLOPs of the default configuration, and an example."""
    try:
        info = get_registry().info(name)
    except UnknownModelError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    signature = str(info.signature().replace(return_annotation=inspect.Signature.empty))
    params, flops = _measure(info) if measure else (info.num_params, None)
    if as_json:
        print(
            json.dumps(
                {
                    **_info_dict(info),
                    "signature": signature,
                    "measured_params": params,
                    "flops": flops,
                    "citation": info.citation,
                    "example": info.example,
                },
                indent=2,
            )
        )
        return
    console.rule(f"[bold]{info.name}[/bold]  ({info.plugin} {info.version})")
    console.print(info.summary)
    console.print(f"[bold]paper[/bold]      {info.paper_title}\n           {info.paper_url}")
    console.print(
        f"[bold]class[/bold]      {info.target}" + (f"   (mirrors {info.reference})" if info.reference else "")
    )
    console.print(f"[bold]input[/bold]      {info.input_kind}: {info.input_layout}; default sample {info.input_shape}")
    console.print(f"[bold]signature[/bold]  {info.name}{signature}")
    config = ", ".join(f"{k}={v!r}" for k, v in info.default_config.items())
    console.print(f"[bold]default[/bold]    {config}")
    flop_text = f"{human(flops)}FLOPs per sample" if flops is not None else "FLOPs not measured"
    console.print(f"[bold]size[/bold]       {human(params)} parameters ({params:,}); {flop_text}")
    if info.importer:
        console.print(
            f"[bold]weights[/bold]    vit_core.load_reference_weights(model, state_dict)  via {info.importer}"
        )
    if info.example:
        console.print("[bold]example[/bold]")
        console.print(Syntax("import torch\n" + info.example, "python", theme="ansi_dark"))
    if info.citation:
        console.print("[bold]citation[/bold]")
        console.print(info.citation, markup=False, highlight=False)


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Installed plugins: version, hook API version, the models each registers, and load errors."""
    from vit_core import __version__
    from vit_core.hookspecs import HOOK_API_VERSION

    registry = get_registry()
    records = list(registry.plugins.values())
    if as_json:
        print(json.dumps([vars(r) | {"ok": r.ok} for r in records], indent=2))
        return
    console.print(f"vit-core {__version__}, hook API version {HOOK_API_VERSION}")
    table = Table(title_justify="left")
    for column in ("plugin", "distribution", "version", "api", "models", "status"):
        table.add_column(column, overflow="fold")
    for r in records:
        status = "[green]ok[/green]" if r.ok else f"[red]{len(r.errors)} error(s)[/red]"
        table.add_row(r.name, r.distribution, r.version, str(r.api_version or "-"), ", ".join(r.models) or "-", status)
    console.print(table)
    if registry.skipped:
        allowlist = os.environ.get(ALLOWLIST_ENV, "")
        console.print(f"not loaded ({ALLOWLIST_ENV}={allowlist!r}): {', '.join(registry.skipped)}", markup=False)
    for r in records:
        for error in r.errors:
            console.print(f"[red]error[/red] in plugin {r.name} ({r.distribution} {r.version}): ", end="")
            console.print(error, markup=False, highlight=False)


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="Kebab-case plugin name, e.g. 'acme-vit' (package acme_vit).")],
    directory: Annotated[str | None, typer.Option("--dir", help="Where to write it (default: ./NAME).")] = None,
) -> None:
    """Write a ready-to-install plugin: pyproject with the entry point, hooks, one model, conformance tests."""
    from vit_core.scaffold import generate_plugin, next_steps, plugin_root

    try:
        written = generate_plugin(name, directory)
    except (ValueError, FileExistsError) as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    root = plugin_root(name, directory)
    console.print(f"created plugin {name} in {root} ({len(written)} files); next:", highlight=False)
    console.print(next_steps(name, root), markup=False, highlight=False)


def main() -> None:
    app()
