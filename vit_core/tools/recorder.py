"""Recorder: a model's post-softmax attention maps, computed only while recording.

Every core :class:`~vit_core.layers.Attention` under the recorded module (subclasses included,
first- or third-party) hands its maps to the recorder; so does any module that declares
``records_attention = True`` and calls its ``recorder(module, weights)`` attribute when set.
Other forward passes keep the fused kernel and never build the maps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vit_core.layers.attention import Attention


def records_attention(module: nn.Module) -> bool:
    """Whether ``module`` hands its attention maps to a Recorder (the recording protocol)."""
    return isinstance(module, Attention) or getattr(module, "records_attention", False) is True


class Recorder(nn.Module):
    """Wrap ``model``; ``forward(x)`` returns ``(output, attention)``.

    ``attention`` is ``(batch, layers, heads, queries, keys)`` when every recorded call has the
    same shape (e.g. ViT: ``(1, 6, 16, 65, 65)``); otherwise a list with one
    ``(batch, heads, queries, keys)`` tensor per attention call, in call order (a packed NaViT
    makes one call per run of equal-length images per layer, ``batch`` being the run's image
    count).  A model whose attention the recorder cannot see (e.g. a third-party ``transformer=``
    trunk) is a ``TypeError`` at construction; a forward pass that recorded nothing is a
    ``RuntimeError``.

    Args:
        model: any model built from the core blocks.
        layer: the module whose attention layers are recorded; defaults to ``model.transformer``
            when the model has one, else the whole model.
        device: where the maps are moved (defaults to the input's device).
    """

    def __init__(
        self, model: nn.Module, layer: nn.Module | None = None, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.vit = model
        self.layer = layer if layer is not None else getattr(model, "transformer", model)
        self.device = device
        self.recordings: list[Tensor] = []
        self.ejected = False
        self.attention_layers = [m for m in self.layer.modules() if records_attention(m)]
        if not self.attention_layers:
            raise TypeError(
                f"Recorder cannot see any attention in {type(model).__name__}"
                + (f" (recorded module: {type(self.layer).__name__})" if self.layer is not model else "")
                + ": it records vit_core.layers.Attention layers and modules declaring records_attention = True"
            )

    def _record(self, _: nn.Module, weights: Tensor) -> None:
        self.recordings.append(weights.detach().clone())

    def eject(self) -> nn.Module:
        """Stop recording for good and return the wrapped model unchanged."""
        self.ejected = True
        for module in self.attention_layers:
            module.recorder = None
        return self.vit

    def clear(self) -> None:
        self.recordings = []

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> tuple[Any, Tensor | list[Tensor]]:
        if self.ejected:
            raise RuntimeError("this Recorder was ejected; wrap the model in a new Recorder")
        self.clear()
        for module in self.attention_layers:
            module.recorder = self._record
        try:
            out = self.vit(x, *args, **kwargs)
        finally:
            for module in self.attention_layers:
                module.recorder = None
        device = self.device or (x.device if isinstance(x, Tensor) else None)
        maps = [m.to(device) if device is not None else m for m in self.recordings]
        if not maps:
            raise RuntimeError(
                f"{type(self.vit).__name__}'s forward pass ran none of its {len(self.attention_layers)} "
                "recordable attention layers"
            )
        if all(m.shape == maps[0].shape for m in maps):
            return out, torch.stack(maps, dim=1)
        return out, maps
