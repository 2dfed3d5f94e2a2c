"""Reading a backbone's embedding where a self-distillation trainer wants it (``hidden_layer``).

* ``None``: the model's own features through vit-core's model interface: ``forward_features``
  (tokens or per-stage maps) and the pooled pre-logits vector ``forward_head(..., pre_logits=True)``.
  The classifier head never runs.
* a dotted module name (``"transformer.layers.3"``, ``"layers"``) or a block index (``3``, a block of
  ``model.transformer.layers``), resolved by :class:`vit_core.Extractor`; the model runs as usual and
  the module's output is read.  That is how any backbone, hierarchical or third-party, plugs in.

What the output is turned into:

* ``(batch, dim)``: the embedding itself (no regions);
* ``(batch, tokens, dim)``: the class token as embedding when the model has prefix tokens
  (``num_prefix_tokens``), else the mean token; the patch tokens are the regions;
* ``(batch, channels, height, width)``: the spatial mean as embedding, every position a region.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vit_core import Extractor


@dataclass
class Embedding:
    """``vector`` ``(batch, dim)``; ``regions`` ``(batch, regions, dim)`` or ``None``."""

    vector: Tensor
    regions: Tensor | None


class HiddenLayer(nn.Module):
    """Runs ``net`` and returns its :class:`Embedding` at ``hidden_layer`` (see the module docstring)."""

    def __init__(self, net: nn.Module, hidden_layer: str | int | None = None) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        if hidden_layer is None:
            missing = [n for n in ("forward_features", "forward_head") if not hasattr(net, n)]
            if missing:
                raise TypeError(
                    f"hidden_layer=None reads the pooled features of a vit-core model; {type(net).__name__} lacks "
                    f"{', '.join(missing)}: pass hidden_layer= the name or block index of the layer to read"
                )
        elif isinstance(hidden_layer, bool) or not isinstance(hidden_layer, (str, int)):
            raise TypeError(f"hidden_layer must be a module name, a block index or None, got {hidden_layer!r}")
        else:
            try:
                Extractor(net, layer_name=hidden_layer).eject()  # resolves it now: a bad name fails here
            except ValueError as error:
                raise ValueError(f"hidden_layer={hidden_layer!r} names no layer: {error}") from error
        self.net = net
        self.hidden_layer = hidden_layer

    def raw(self, x: Tensor) -> Tensor:
        """The backbone output at ``hidden_layer`` (features for ``None``)."""
        if self.hidden_layer is None:
            return self.net.forward_features(x)
        extractor = Extractor(self.net, layer_name=self.hidden_layer, detach=False, return_embeddings_only=True)
        try:
            out = extractor(x)
        finally:
            extractor.eject()
        if isinstance(out, (tuple, list)):
            out = next((t for t in out if isinstance(t, Tensor)), None)
        if not isinstance(out, Tensor):
            raise RuntimeError(
                f"hidden_layer={self.hidden_layer!r} of {type(self.net).__name__} emitted no tensor during forward"
            )
        return out

    def forward(self, x: Tensor) -> Embedding:
        out = self.raw(x)
        prefix = int(getattr(self.net, "num_prefix_tokens", 0) or 0)
        if self.hidden_layer is None:
            vector = self.net.forward_head(out, pre_logits=True)
            return Embedding(vector, _regions(out, prefix))
        if out.ndim == 2:
            return Embedding(out, None)
        if out.ndim == 3:
            vector = out[:, 0] if prefix else out.mean(dim=1)
            return Embedding(vector, out[:, prefix:])
        if out.ndim == 4:
            return Embedding(out.mean(dim=(2, 3)), out.flatten(2).transpose(1, 2))
        raise ValueError(
            f"hidden_layer={self.hidden_layer!r} gave shape {tuple(out.shape)}; expected (batch, dim), "
            "(batch, tokens, dim) or (batch, channels, height, width)"
        )


def _regions(features: Tensor, prefix: int) -> Tensor | None:
    if features.ndim == 3:
        return features[:, prefix:]
    if features.ndim == 4:
        return features.flatten(2).transpose(1, 2)
    return None


@torch.no_grad()
def probe(reader: HiddenLayer, sizes: list[tuple[int, int]], channels: int) -> Embedding:
    """One forward of a zero image of each size (eval mode, no gradients): checks the backbone takes
    them and returns the embedding of the first, whose widths size the heads."""
    was_training = reader.training
    reader.eval()
    device = next((p.device for p in reader.parameters()), torch.device("cpu"))
    try:
        found = [reader(torch.zeros(1, channels, *size, device=device)) for size in dict.fromkeys(sizes)]
    finally:
        reader.train(was_training)
    return found[0]
