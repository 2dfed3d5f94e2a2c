"""The pluggy hook specifications every vit plugin implements.

A plugin is a module named by an entry point in the group ``vit_core.plugins``; it holds
functions decorated with :data:`hookimpl`.  Hook names are checked: an implementation that
matches no specification below makes the plugin fail to load (a misspelled hook is an error).

This module imports neither torch nor any model, so listing models stays fast.
"""

from __future__ import annotations

import pluggy

PROJECT = "vit_core"
ENTRY_POINT_GROUP = "vit_core.plugins"
HOOK_API_VERSION = 2
"""Version of this hook API (the hooks and the ``ModelInfo`` fields).  A plugin states the version
it was written for with ``vit_api_version`` (a literal, not this constant); a plugin stating a
version outside :data:`SUPPORTED_API_VERSIONS` is reported and skipped.
Version 2 (vit-core 0.2): ``ModelInfo`` lost ``num_params`` (counts are measured) and gained
``kind``, ``presets``, ``takes_labels`` and ``plugs_into``."""
SUPPORTED_API_VERSIONS = range(2, HOOK_API_VERSION + 1)
"""The hook API versions whose plugins this vit-core loads.  Version 1 plugins (``ModelInfo`` with
``num_params``) are not: their metadata no longer validates."""


def describe_api_versions() -> str:
    """:data:`SUPPORTED_API_VERSIONS` for messages: ``"version 2"`` or ``"versions 2 to 3"``."""
    first, last = SUPPORTED_API_VERSIONS[0], SUPPORTED_API_VERSIONS[-1]
    return f"version {first}" if first == last else f"versions {first} to {last}"


hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class VitHookSpecs:
    """The hooks a plugin implements (``vit_register_models`` is required, ``vit_api_version`` checked)."""

    @hookspec(firstresult=True)
    def vit_api_version(self) -> int:  # type: ignore[empty-body]
        """Return the hook API version this plugin was written for, as a literal (:data:`SUPPORTED_API_VERSIONS`)."""

    @hookspec
    def vit_register_models(self) -> list:  # type: ignore[empty-body]
        """Return a list of :class:`vit_core.registry.ModelInfo`, one per model, trainer or backend.

        Metadata only: the classes are named by ``"module:attr"`` strings and imported the first
        time an entry is built or described.
        """


HOOK_NAMES = tuple(name for name in vars(VitHookSpecs) if name.startswith("vit_"))
"""Every hook name (a plugin function named like one but not marked with :data:`hookimpl` is reported)."""
