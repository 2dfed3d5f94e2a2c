"""The checks every kind passes first: ``metadata`` (the ``ModelInfo`` is complete and fits its target) and
``listing`` (the entry is listed and built through the public API)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

from torch import nn

from vit_core.registry import resolve
from vit_core.testing.subject import Subject, build, describe

DESCRIBED = ("citation", "example")
"""The ``ModelInfo`` fields ``vit describe`` shows, which the kit requires to be filled in."""

IMAGE_SIZE_NAMES = ("image_size", "img_size", "input_size")
INPUT_ROLES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "channels_arg": ("channels", lambda name: "channels" in name),
    "size_arg": ("size", lambda name: name in IMAGE_SIZE_NAMES),
    "frames_arg": ("frames", lambda name: "frames" in name),
}
"""The ``ModelInfo`` fields naming the constructor arguments of the input's shape: the role each
names, and which constructor arguments hold that role (``n_input_channels``, ``img_size``, ``num_frames``)."""


def check_metadata(s: Subject) -> None:
    """The ``ModelInfo`` re-validates, is described, its target and importer import, and every configuration
    (default, reference, presets) fits the target's signature; components name registered models."""
    info = s.info
    try:
        dataclasses.replace(info)
    except Exception as exc:
        raise s.fail("metadata", describe(exc)) from exc
    missing = [attr for attr in DESCRIBED if not str(getattr(info, attr)).strip()]
    if missing:
        raise s.fail("metadata", f"{' and '.join(missing)} must be filled in for `vit describe`")
    try:
        target = info.load_class()
    except Exception as exc:
        raise s.fail("metadata", f"target {info.target!r} does not import: {describe(exc)}") from exc
    if not callable(target):
        raise s.fail("metadata", f"target {info.target!r} is not a class or factory")
    try:
        info.signature().bind_partial(**info.default_config)
    except (TypeError, ValueError) as exc:
        raise s.fail(
            "metadata",
            f"default_config {dict(info.default_config)} does not fit the signature "
            f"{info.target}{inspect.signature(target)}: {exc}",
        ) from exc
    if info.importer is not None:
        try:
            importer = resolve(info.importer)
        except Exception as exc:
            raise s.fail("metadata", f"importer {info.importer!r} does not import: {describe(exc)}") from exc
        if not callable(importer):
            raise s.fail("metadata", f"importer {info.importer!r} is not callable")
    _check_input_arguments(s)
    _check_presets_and_components(s)


def _check_input_arguments(s: Subject) -> None:
    """A ``channels_arg`` / ``size_arg`` / ``frames_arg`` that is not a constructor argument, where the
    constructor has arguments of that role, points ``vit train`` and ``vit bench`` at the default input."""
    if s.info.input_kind not in ("image", "video"):
        return
    parameters = s.info.signature().parameters
    for field, (role, holds) in INPUT_ROLES.items():
        named = getattr(s.info, field)
        candidates = [p for p in parameters if holds(p)]
        if named not in parameters and candidates:
            raise s.fail(
                "metadata",
                f"{field}={named!r} is not an argument of {s.info.target}; its constructor takes {candidates}: "
                f"set ModelInfo({field}=...) to the one holding the input's {role}",
            )


def _check_presets_and_components(s: Subject) -> None:
    info, reg = s.info, s.active_registry
    signature = info.signature()
    configs = {"reference_config": info.reference_config}
    configs |= {f"preset {name!r} config": preset.config for name, preset in info.presets.items()}
    for what, config in configs.items():
        try:
            signature.bind_partial(**config)
        except TypeError as exc:
            raise s.fail("metadata", f"{what} {dict(config)} does not fit {info.target}{signature}: {exc}") from exc
    named = {f"{arg}=": c for arg, c in info.components.items()}
    if info.plugs_into is not None:
        named["plugs_into="] = info.plugs_into
    for where, component in named.items():
        try:
            reg.info(component.model)
        except KeyError as exc:
            raise s.fail("metadata", f"{where}{component} names no registered model: {exc}") from None


def check_listing(s: Subject) -> None:
    """``list_models`` returns the entry and ``create_model`` builds a ``torch.nn.Module`` of it."""
    if s.key not in s.listed(s.info.name):
        raise s.fail("listing", "not returned by list_models(); is its plugin installed and allowed by VIT_PLUGINS?")
    model = build(s, "listing")
    if not isinstance(model, nn.Module):
        raise s.fail("listing", f"create_model returned {type(model).__name__}, not a torch.nn.Module")
