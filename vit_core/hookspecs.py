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
it targets with ``vit_api_version``; a plugin targeting another version is reported and skipped.
Version 2 (vit-core 0.2): ``ModelInfo`` lost ``num_params`` (counts are measured) and gained
``kind``, ``presets``, ``takes_labels`` and ``plugs_into``."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class VitHookSpecs:
    """The hooks a plugin implements (``vit_register_models`` is required, ``vit_api_version`` checked)."""

    @hookspec(firstresult=True)
    def vit_api_version(self) -> int:  # type: ignore[empty-body]
        """Return the hook API version this plugin targets (:data:`HOOK_API_VERSION`)."""

    @hookspec
    def vit_register_models(self) -> list:  # type: ignore[empty-body]
        """Return a list of :class:`vit_core.registry.ModelInfo`, one per model, trainer or backend.

        Metadata only: the classes are named by ``"module:attr"`` strings and imported the first
        time an entry is built or described.
        """


HOOK_NAMES = tuple(name for name in vars(VitHookSpecs) if name.startswith("vit_"))
"""Every hook name (a plugin function named like one but not marked with :data:`hookimpl` is reported)."""
