"""``vit new-plugin``: a ready-to-install plugin from the template (:mod:`vit_core.scaffold`)."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.output import console, fail


def new_plugin(
    name: Annotated[str, typer.Argument(help="Kebab-case plugin name, e.g. 'acme-vit' (package acme_vit).")],
    directory: Annotated[str | None, typer.Option("--dir", help="Where to write it (default: ./NAME).")] = None,
) -> None:
    """Write a ready-to-install plugin: pyproject with the entry point, hooks, one model, conformance tests."""
    from vit_core.scaffold import generate_plugin, next_steps, plugin_root

    try:
        written = generate_plugin(name, directory)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc))
    root = plugin_root(name, directory)
    console.print(f"created plugin {name} in {root} ({len(written)} files); next:", highlight=False)
    console.print(next_steps(name, root), markup=False, highlight=False)
