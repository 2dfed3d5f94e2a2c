"""What every command prints through: the consoles, one-line errors, JSON, and tables of one line per row.

:func:`print_rows` keeps each row on one line at any width: on a terminal narrower than the table
it drops columns (least useful first) and shortens list-like cells at a separator (``a, b, …``);
where stdout is not a terminal it prints plain lines (no box drawing, no colour) fitted to
``COLUMNS`` when that is set, whole otherwise, for ``grep`` and ``cut``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vit_core.registry import Component

console = Console(soft_wrap=True)
"""Standard output."""
errors = Console(stderr=True, soft_wrap=True)
"""Standard error: warnings and the one-line ``error:`` of a command that fails."""

GAP = 2
"""Spaces between two columns of :func:`print_rows`."""
ELLIPSIS = "…"


def fail(message: str) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit 1."""
    errors.print("[red]error:[/red] ", end="")
    errors.print(message, markup=False, highlight=False)
    raise typer.Exit(1)


def _json_value(value: Any) -> Any:
    if isinstance(value, Component):
        return value.to_json()
    return repr(value)


def dumps(data: Any) -> str:
    """``data`` as indented JSON (a component as its JSON form, anything else JSON cannot hold as its repr)."""
    return json.dumps(data, indent=2, default=_json_value)


@dataclass(frozen=True)
class Column:
    """A column of :func:`print_rows`.

    ``drop``: None keeps the column at any width; otherwise columns are dropped, lowest ``drop`` first,
    while the table is wider than the screen.  ``shorten``: a list-like column, cut at its last ``", "``
    that fits (``…`` added) to the width the other columns leave; columns are dropped before it would get
    less than ``min_width``.
    """

    header: str
    right: bool = False
    drop: int | None = None
    shorten: bool = False
    min_width: int = 20


def table_width(out: Console) -> int | None:
    """The width rows must fit: ``COLUMNS`` when set (read now: the console fixed its own at creation), else
    the terminal's; where stdout is not a terminal and ``COLUMNS`` is unset, none."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return out.width if out.is_terminal else None


def shorten(text: Text, width: int) -> Text:
    """``text`` cut to ``width`` cells at its last ``", "`` that fits, ``…`` added (mid-word where none fits)."""
    if text.cell_len <= width:
        return text
    cut = text.plain[: max(0, width - len(ELLIPSIS))]
    separator = cut.rfind(", ")
    end = separator + 2 if separator > 0 else len(cut)
    return Text.assemble(text[:end], ELLIPSIS)


def fit(columns: Sequence[Column], rows: Sequence[list[Text]], width: int | None) -> list[int]:
    """The indices of the columns shown in ``width`` cells (all when ``width`` is None), shortening ``rows``'
    list-like cells in place where the shown columns are still too wide."""
    widths = [max([len(c.header)] + [row[i].cell_len for row in rows]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    if width is None:
        return shown

    def least(i: int) -> int:
        column = columns[i]
        return min(widths[i], max(len(column.header), column.min_width)) if column.shorten else widths[i]

    for _, index in sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None):
        if sum(least(i) for i in shown) + GAP * (len(shown) - 1) <= width:
            break
        shown.remove(index)
    for index in (i for i in shown if columns[i].shorten):
        others = sum(widths[i] for i in shown if i != index) + GAP * (len(shown) - 1)
        room = max(len(columns[index].header), width - others)
        for row in rows:
            row[index] = shorten(row[index], room)
        widths[index] = min(widths[index], room)
    return shown


def print_rows(
    columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], title: str | None = None, out: Console = console
) -> None:
    """``rows`` under ``columns``' headers, one line each (see the module's docstring), after ``title``."""
    cells = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]
    width = table_width(out)
    shown = fit(columns, cells, width)
    if title is not None:
        out.print(title, markup=False, highlight=False)
    if not out.is_terminal:
        widths = {i: max([len(columns[i].header)] + [row[i].cell_len for row in cells]) for i in shown}
        for line in [[Text(columns[i].header) for i in range(len(columns))], *cells]:
            parts = [
                line[i].plain.rjust(widths[i]) if columns[i].right else line[i].plain.ljust(widths[i]) for i in shown
            ]
            print((" " * GAP).join(parts).rstrip())
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, GAP - 1, 0, 0))  # + 1 divider
    for i in shown:
        table.add_column(columns[i].header, justify="right" if columns[i].right else "left", no_wrap=True)
    for row in cells:
        table.add_row(*(row[i] for i in shown))
    if width is not None:
        out.width = width  # the console read COLUMNS once, when created; a terminal's width may have changed since
    out.print(table)
