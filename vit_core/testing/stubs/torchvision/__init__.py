"""A minimal stand-in for torchvision, so the oracles (vit-pytorch, timm) import beside a CPU torch.

vit-pytorch's package ``__init__`` imports its DINO module, which imports
``torchvision.transforms``; timm imports ``torchvision.ops``, ``torchvision.datasets`` and more at
import time.  Neither calls them on the paths we test or benchmark.  Every ``torchvision.*``
submodule resolves to a module whose attributes are placeholder classes: subclassing one works,
calling one raises; class attributes (enum members) are placeholders too.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (_Placeholder,), {"__module__": cls.__module__})


class _Placeholder(metaclass=_PlaceholderMeta):
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"torchvision is stubbed: {type(self).__name__} is not available")


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = _PlaceholderMeta(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, placeholder)
        return placeholder


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        return None


sys.meta_path.insert(0, _StubFinder())
__version__ = "0.0.0+stub"
