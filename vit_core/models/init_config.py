"""A model records the keyword arguments it was built with, as ``model.init_config``.

Every :class:`vit_core.VisionModel` subclass gets this when it is defined
(``VisionModel.__init_subclass__`` calls :func:`record_init_config`), so a model knows its own
configuration; ``vit_core.save_model`` reads ``init_config`` to write ``config.json``, and
``vit_core.load_model`` rebuilds the model from it.  This module belongs to the model layer and
imports nothing from saving, training or the command line.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn


def record_init_config(cls: type) -> None:
    """Wrap ``cls.__init__`` so that the instance records the arguments it was built with as ``init_config``.

    Only the outermost constructor records (a subclass calling ``super().__init__`` keeps its own
    arguments); positional arguments are stored by name, ``**kwargs`` flattened into the mapping and
    extra ``*args`` kept under ``"*NAME"``.  Called by ``VisionModel.__init_subclass__``; a class
    without an ``__init__`` of its own, or one already wrapped, is left as it is.
    """
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_records_init_config", False):
        return
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is __init__:
            self.init_config = _bound_arguments(signature, args, kwargs)

    __init__._records_init_config = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


def _bound_arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments of a call ``init(self, *args, **kwargs)`` of a method with ``signature``, by name
    (``self`` left out)."""
    bound = signature.bind(None, *args, **kwargs)
    config: dict[str, Any] = {}
    for position, (name, value) in enumerate(bound.arguments.items()):
        kind = signature.parameters[name].kind
        if position == 0:
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            config.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                config["*" + name] = value
        else:
            config[name] = value
    return config
