"""vit-core: building blocks, ViT / SimpleViT / NaViT, Recorder / Extractor, the model registry.

Exports are loaded lazily, so ``import vit_core`` (and the ``vit`` command line) does not import
torch until a model, block or tool is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "ViT": "vit_core.models.vit",
    "SimpleViT": "vit_core.models.simple_vit",
    "NaViT": "vit_core.models.navit",
    "VisionModel": "vit_core.models.base",
    "PatchTransformer": "vit_core.models.patch_model",
    "Recorder": "vit_core.tools.recorder",
    "Extractor": "vit_core.tools.extractor",
    "load_reference_weights": "vit_core.interop.reference",
    "load_pretrained": "vit_core.interop.pretrained",
    "save_model": "vit_core.interop.saving",
    "load_model": "vit_core.interop.saving",
    "create_model": "vit_core.registry",
    "list_models": "vit_core.registry",
    "get_registry": "vit_core.registry",
    "ModelInfo": "vit_core.registry",
    "UnknownModelError": "vit_core.registry",
    "hookimpl": "vit_core.hookspecs",
    "hookspec": "vit_core.hookspecs",
    "HOOK_API_VERSION": "vit_core.hookspecs",
}

__all__ = [
    "HOOK_API_VERSION",
    "Extractor",
    "ModelInfo",
    "NaViT",
    "PatchTransformer",
    "Recorder",
    "SimpleViT",
    "UnknownModelError",
    "ViT",
    "VisionModel",
    "create_model",
    "get_registry",
    "hookimpl",
    "hookspec",
    "list_models",
    "load_model",
    "load_pretrained",
    "load_reference_weights",
    "save_model",
]


def lazy_exports(module_name: str, exports: dict[str, str]) -> tuple[Any, Any]:
    """``__getattr__`` and ``__dir__`` for a package whose attributes live in submodules.

    Plugins use it too, so that loading their entry point (which imports the package) stays cheap.
    """
    module = importlib.import_module(module_name)

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vit_core.hookspecs import HOOK_API_VERSION, hookimpl, hookspec
    from vit_core.interop.pretrained import load_pretrained
    from vit_core.interop.reference import load_reference_weights
    from vit_core.interop.saving import load_model, save_model
    from vit_core.models.base import VisionModel
    from vit_core.models.navit import NaViT
    from vit_core.models.patch_model import PatchTransformer
    from vit_core.models.simple_vit import SimpleViT
    from vit_core.models.vit import ViT
    from vit_core.registry import ModelInfo, UnknownModelError, create_model, get_registry, list_models
    from vit_core.tools.extractor import Extractor
    from vit_core.tools.recorder import Recorder
