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
HOOK_API_VERSION = 1
"""Version of this hook API.  A plugin states the version it targets with ``vit_api_version``;
a plugin targeting another major version is reported and skipped."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class VitHookSpecs:
    """Hooks a plugin may implement (all optional but ``vit_register_models``)."""

    @hookspec(firstresult=True)
    def vit_api_version(self) -> int:  # type: ignore[empty-body]
        """Return the hook API version this plugin targets (:data:`HOOK_API_VERSION`)."""

    @hookspec
    def vit_register_models(self) -> list:  # type: ignore[empty-body]
        """Return a list of :class:`vit_core.registry.ModelInfo`, one per model the plugin provides.

        Metadata only: the model classes are named by ``"module:attr"`` strings and imported the
        first time a model is built or described.
        """
