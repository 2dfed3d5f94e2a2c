"""Extractor: the output (or input) of one named layer, next to the model's prediction."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def _map(fn: Any, value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_map(fn, v) for v in value)
    return fn(value) if isinstance(value, Tensor) else value


def find_layer(model: nn.Module, layer_name: str | int) -> nn.Module:
    """The submodule of ``model`` named ``layer_name`` (dotted), or block ``layer_name`` of
    ``model.transformer.layers``; a ValueError lists the valid names."""
    if isinstance(layer_name, int) and not isinstance(layer_name, bool):
        blocks = getattr(getattr(model, "transformer", None), "layers", None)
        if not isinstance(blocks, nn.ModuleList):
            raise ValueError(
                f"layer_name={layer_name} is a block index, but {type(model).__name__} has no transformer.layers"
            )
        if not -len(blocks) <= layer_name < len(blocks):
            raise ValueError(f"layer_name={layer_name} is outside the {len(blocks)} blocks of transformer.layers")
        return blocks[layer_name]
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(layer_name, str) and layer_name in names:
        return model.get_submodule(layer_name)
    shallow = [n for n in names if n.count(".") <= 2]
    raise ValueError(
        f"layer_name={layer_name!r} is not a module of {type(model).__name__}; valid names include "
        f"{', '.join(shallow[:40])}{' ...' if len(shallow) > 40 else ''} (or a block index)"
    )


class Extractor(nn.Module):
    """Wrap ``model``; ``forward(x)`` returns ``(output, embeddings)``.

    Args:
        model: the model.
        device: where embeddings are moved (defaults to the input's device).
        layer: the module to read; overrides ``layer_name``.
        layer_name: the module of ``model`` to read, by (dotted) name such as
            ``"transformer.layers.3"`` or ``"to_latent"``, or by block index (``3`` is
            ``transformer.layers.3``); default ``"transformer"``: the token embeddings
            ``(batch, tokens, dim)``.
        layer_save_input: keep the layer's input instead of its output.
        return_embeddings_only: return only the embeddings.
        detach: detach (and clone) the embeddings.
    """

    def __init__(
        self,
        model: nn.Module,
        device: Any = None,
        layer: nn.Module | None = None,
        layer_name: str | int = "transformer",
        layer_save_input: bool = False,
        return_embeddings_only: bool = False,
        detach: bool = True,
    ) -> None:
        super().__init__()
        if layer is None:
            layer = find_layer(model, layer_name)
        self.vit, self.layer, self.device = model, layer, device
        self.layer_save_input, self.return_embeddings_only, self.detach = (
            layer_save_input,
            return_embeddings_only,
            detach,
        )
        self.latents: Any = None
        self.ejected = False
        self._handle: RemovableHandle | None = layer.register_forward_hook(self._hook)

    def _hook(self, _: nn.Module, inputs: Any, output: Any) -> None:
        value = inputs if self.layer_save_input else output
        if self.layer_save_input and isinstance(value, tuple) and len(value) == 1:
            value = value[0]
        self.latents = _map(lambda t: t.detach().clone(), value) if self.detach else value

    def eject(self) -> nn.Module:
        """Remove the hook and return the wrapped model unchanged."""
        self.ejected = True
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        return self.vit

    def forward(self, x: Any, return_embeddings_only: bool = False, **kwargs: Any) -> Any:
        if self.ejected:
            raise RuntimeError("this Extractor was ejected; wrap the model in a new Extractor")
        self.latents = None
        out = self.vit(x, **kwargs)
        device = self.device or (x.device if isinstance(x, Tensor) else None)
        latents = _map(lambda t: t.to(device), self.latents) if device is not None else self.latents
        if return_embeddings_only or self.return_embeddings_only:
            return latents
        return out, latents
