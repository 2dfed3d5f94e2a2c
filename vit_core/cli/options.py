"""Option parsing shared by the commands: ``--set KEY=VALUE`` values and the options several commands take.

Every command reads a ``--set`` value the same way (:func:`parse_sets`): a Python literal or JSON
(``true``, ``null``), lists made tuples, anything else a string.
"""

from __future__ import annotations

import ast
import json
from typing import Annotated, Any

import typer


class OptionError(ValueError):
    """A command-line option whose value cannot be read: the message names the option and the value."""


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["dim=128", "image_size=[32,48]", "pool=mean"]`` -> ``{"dim": 128, "image_size": (32, 48),
    "pool": "mean"}``: each value a Python literal or JSON (``true``, ``null``), lists made tuples;
    anything else is a string.  Keys may be dotted (``encoder.dim``: ``vit train``'s components)."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--set {pair!r}: expected key=value, e.g. --set dim=128")
        out[key.strip()] = _tuples(_literal(text))
    return out


def argument_sets(pairs: list[str]) -> dict[str, Any]:
    """:func:`parse_sets` for a constructor's own arguments: each key must be an argument name (no dots)."""
    bad = [pair for pair in pairs if "=" not in pair or not pair.partition("=")[0].strip().isidentifier()]
    if bad:
        raise OptionError(f"--set takes key=value with key an argument name (e.g. --set dim=64), got {bad[0]!r}")
    return parse_sets(pairs)


def _literal(text: str) -> Any:
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(text)
        except (ValueError, SyntaxError):  # json.JSONDecodeError is a ValueError
            continue
    return text


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


RetainFreedMemory = Annotated[
    bool,
    typer.Option(
        help="Keep freed CPU memory in the process for the next step (vit_core.runtime.allocator; glibc: no page "
        "faults per large tensor, 21% of a ViT-B/16 training step on a 2-core VM; peak memory in vit bench is "
        "measured in fresh processes either way).",
    ),
]
"""``vit train`` and ``vit bench``: malloc keeps freed memory (on by default)."""
Threads = Annotated[
    int | None,
    typer.Option(help="CPU threads per process (default: OMP_NUM_THREADS, else 1).", metavar="N"),
]
"""``vit train`` and ``vit bench``: intra-op CPU threads (:func:`vit_core.training.distributed.cpu_threads`)."""
SET_METAVAR = "KEY=VALUE"
"""How ``--help`` shows a ``--set`` value."""
