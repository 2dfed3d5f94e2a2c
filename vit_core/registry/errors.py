"""The lookup errors: a name that does not resolve to exactly one registered entry, and why."""

from __future__ import annotations

from collections.abc import Iterable

from vit_core.registry.plugins import PluginRecord
from vit_core.registry.schema import ModelInfo


class ModelLookupError(KeyError):
    """A name that does not resolve to exactly one registered entry (base of the three lookup errors)."""

    def __str__(self) -> str:
        return self.args[0]


class UnknownModelError(ModelLookupError):
    """No entry of that name; ``matches`` holds close names.  Failed and skipped plugins are mentioned."""

    def __init__(self, name: str, matches: list[str], hints: Iterable[str] = ()) -> None:
        self.name, self.matches = name, matches
        message = f"unknown model {name!r}"
        message += f"; did you mean {', '.join(matches)}?" if matches else "; run `vit list` to see them"
        super().__init__("".join([message, *(f"; {hint}" for hint in hints)]))


class FailedPluginError(ModelLookupError):
    """The name belongs (or may belong) to a plugin that failed to load; ``plugin`` is its record."""

    def __init__(self, name: str, plugin: PluginRecord) -> None:
        self.name, self.plugin = name, plugin
        super().__init__(f"model {name!r} belongs to plugin {plugin.name!r} which failed to load: {plugin.cause}")


class AmbiguousModelError(ModelLookupError):
    """Several plugins claim the name; ``claimants`` are their entries."""

    def __init__(self, name: str, claimants: list[ModelInfo]) -> None:
        self.name, self.claimants = name, claimants
        who = " and ".join(f"plugin {i.plugin!r} ({i.distribution} {i.version})".replace(" )", ")") for i in claimants)
        use = " or ".join(repr(i.qualified_name) for i in claimants)
        super().__init__(f"model name {name!r} is claimed by {who}; none of them gets the bare name: use {use}")
