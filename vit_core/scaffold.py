"""``vit new-plugin``: write a ready-to-install third-party plugin from the templates shipped with vit-core.

The templates live in ``vit_core/templates/plugin/`` (package data); every file ends in ``.tmpl``
and holds ``{{placeholder}}`` fields, filled from :func:`plugin_values`.  The folder ``package``
becomes the plugin's import package.  This module imports neither torch nor any model.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

TEMPLATE_SUFFIX = ".tmpl"
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{field}}`` of ``text``; a field missing from ``values`` is an error."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise KeyError(f"template field {{{{{match.group(1)}}}}} has no value")
        return values[match.group(1)]

    return _FIELD.sub(substitute, text)


def class_name(name: str) -> str:
    """``"acme-vit"`` -> ``"AcmeViT"``."""
    return "".join("ViT" if part == "vit" else part.capitalize() for part in name.split("-"))


def check_name(name: str) -> str:
    """Validate a plugin name (kebab-case, a free import package and model name); return the package name."""
    if not _NAME.match(name):
        raise ValueError(f"plugin name must be kebab-case starting with a letter (e.g. 'acme-vit'), got {name!r}")
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise ValueError(f"plugin name {name!r} gives the package {package!r}, a Python keyword")
    if importlib.util.find_spec(package) is not None:
        raise ValueError(f"a module named {package!r} is already importable here; pick another plugin name")
    from vit_core.registry import get_registry

    held = [e.plugin for e in get_registry().entries.values() if e.name == name]
    if held:
        raise ValueError(f"model name {name!r} is already registered by plugin {held[0]!r}; pick another name")
    return package


def plugin_values(name: str) -> dict[str, str]:
    """The template fields for plugin ``name``."""
    from vit_core import __version__

    return {
        "name": name,
        "package": check_name(name),
        "class_name": class_name(name),
        "core_version": __version__,
    }


def _templates(root: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            if entry.name != "__pycache__":
                out += _templates(entry, (*prefix, entry.name))
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            out.append(((*prefix, entry.name[: -len(TEMPLATE_SUFFIX)]), entry))
    return out


def plugin_root(name: str, directory: str | Path | None = None) -> Path:
    """The folder :func:`generate_plugin` writes to: ``directory``, or ``./NAME``."""
    return Path(directory) if directory is not None else Path.cwd() / name


def generate_plugin(name: str, directory: str | Path | None = None) -> list[Path]:
    """Write the plugin project ``name`` into ``directory`` (default ``./NAME``); return the files written.

    The directory must not exist or be empty.  Raises ``ValueError`` for a bad or taken name and
    ``FileExistsError`` for a non-empty directory.
    """
    values = plugin_values(name)
    root = plugin_root(name, directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty directory")
    written = []
    for parts, template in _templates(files("vit_core") / "templates" / "plugin"):
        path = root.joinpath(*(values["package"] if part == "package" else part for part in parts))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(template.read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(path)
    return written


def next_steps(name: str, root: Path) -> str:
    """What to do after :func:`generate_plugin`, for the command line."""
    return (
        f"cd {root}\n"
        "pip install -e '.[test]'     # registers the entry point\n"
        f"vit describe {name}\n"
        "pytest                       # the vit-core conformance kit checks every model\n"
        "See the plugin author guide (docs/plugins.md of vit-core) to add models and publish."
    )
