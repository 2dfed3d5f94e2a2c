"""Component assembly: an entry built with the registered models its configuration names, and example inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vit_core.registry.errors import ModelLookupError
from vit_core.registry.lookup import NameIndex
from vit_core.registry.schema import Component, MetadataError, ModelInfo


class Assembly(NameIndex):
    """Builds entries by name: :class:`~vit_core.registry.schema.Component` arguments become models first."""

    def create(self, name: str, **overrides: Any) -> Any:
        """Build ``name`` from its default configuration updated with ``overrides``."""
        return self.create_with_parts(name, **overrides)[0]

    def create_with_parts(self, name: str, **overrides: Any) -> tuple[Any, dict[str, Any]]:
        """``create``, also returning the models built for its :class:`Component` arguments, by argument."""
        return self._assemble(self.info(name), overrides, ())

    def _assemble(self, info: ModelInfo, overrides: Mapping[str, Any], stack: tuple[str, ...]) -> tuple[Any, dict]:
        config = {**info.default_config, **overrides}
        parts = {}
        for arg, value in config.items():
            if not isinstance(value, Component):
                continue
            where = f"{info.describe_origin()}: {arg}={value}"
            try:
                part_info = self.info(value.model)
            except ModelLookupError as exc:
                raise MetadataError(f"{where} names no buildable model: {exc}") from None
            if part_info.qualified_name in stack or part_info is info:
                raise MetadataError(f"{where} builds itself (a cycle of components)")
            parts[arg] = self._assemble(part_info, value.config, (*stack, info.qualified_name))[0]
        return info.load_class()(**{**config, **parts}), parts

    def example_args(self, info: ModelInfo, parts: Mapping[str, Any], batch: int = 1) -> tuple[Any, ...]:
        """Positional arguments of one call on random data: ``(x,)``, or ``(images, labels)`` for a
        trainer with ``takes_labels`` (labels below the ``num_classes`` of the trained component)."""
        x = info.example_input(batch)
        if not info.takes_labels:
            return (x,)
        import torch

        trained = [parts[arg] for arg, c in info.components.items() if c.trained and arg in parts]
        num_classes = getattr(trained[0], "num_classes", None) if trained else None
        if not isinstance(num_classes, int) or num_classes < 1:
            raise MetadataError(f"{info.describe_origin()} takes labels but its trained component has no num_classes")
        return x, torch.randint(0, num_classes, (batch,))
