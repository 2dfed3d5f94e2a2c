"""``vit attention``: where a model looks, drawn over the input image as a PNG.

Two maps from the attention that :class:`vit_core.Recorder` records:

* ``last``: the last layer's attention of the class token (of the mean query when the model has no
  prefix token) over the patches, averaged over heads;
* ``rollout``: attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers",
  arXiv 2005.00928): per layer the head-averaged attention plus the identity (the residual path),
  rows renormalised, multiplied through the layers; the class token's row over the patches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS = ("rollout", "last")


def _grid_and_prefix(model: nn.Module, x: Tensor) -> tuple[tuple[int, int], int]:
    tokenize = getattr(model, "tokenize", None)
    if not callable(tokenize):
        raise TypeError(
            f"{type(model).__name__} has no tokenize(x) (the encoder protocol of ViT-like patch models), "
            "so its attention cannot be placed on the image"
        )
    _, grid = tokenize(x)
    if len(grid) != 2:
        raise TypeError(f"{type(model).__name__} cuts a {len(grid)}-D token grid; vit attention draws 2-D images")
    return (int(grid[0]), int(grid[1])), int(getattr(model, "num_prefix_tokens", 0))


def attention_map(model: nn.Module, x: Tensor, method: str = "rollout") -> Tensor:
    """``(grid_h, grid_w)`` map, summing to 1, of where ``model`` attends on the single image ``x`` ``(1, c, h, w)``."""
    from vit_core.tools.recorder import Recorder

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1, channels, height, width), got shape {tuple(x.shape)}")
    grid, prefix = _grid_and_prefix(model, x)
    patches = grid[0] * grid[1]
    with torch.no_grad():
        _, attention = Recorder(model)(x)
    if isinstance(attention, Tensor):
        layers = attention[0]
    else:
        sizes = sorted({tuple(a.shape[-2:]) for a in attention})
        if len(sizes) > 1:
            raise TypeError(
                f"{type(model).__name__}'s layers attend over different token counts {sizes} (it drops tokens "
                "on the way), so its attention cannot be placed on the image grid"
            )
        layers = torch.stack([a[0] for a in attention])
    layers = layers.float().mean(1)  # (layers, n, n), heads averaged
    if layers.shape[-1] != prefix + patches or layers.shape[-2] != prefix + patches:
        raise TypeError(
            f"{type(model).__name__}'s attention is over {tuple(layers.shape[-2:])} tokens, not the "
            f"{prefix} prefix + {patches} patch tokens of its grid {grid}: it cannot be drawn on the image"
        )
    if method == "last":
        joint = layers[-1]
    else:
        eye = torch.eye(layers.shape[-1])
        joint = eye
        for layer in layers:
            mixed = layer + eye
            joint = (mixed / mixed.sum(-1, keepdim=True)) @ joint
    row = joint[0] if prefix else joint.mean(0)
    weights = row[prefix:].clamp_min(0)
    return (weights / weights.sum().clamp_min(1e-12)).reshape(grid)


def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> tuple[Any, Tensor]:
    """The Pillow image (RGB) and the model's input ``(1, channels, *size)`` normalised as ``vit train`` does."""
    import numpy as np
    from PIL import Image

    from vit_core.data import _fit

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)
    return image, _fit(tensor.unsqueeze(0), channels, size)


def overlay(image: Any, heat: Tensor, alpha: float = 0.5) -> Any:
    """``image`` (Pillow, RGB) blended with ``heat`` (any grid) upsampled to its size: blue (low) to red (high)."""
    from PIL import Image

    width, height = image.size
    heat = F.interpolate(heat[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
    colour = torch.stack([heat, 4 * heat * (1 - heat), 1 - heat], dim=-1)  # (h, w, 3)
    base = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(height, width, 3).float() / 255
    blended = ((1 - alpha) * base + alpha * colour).clamp(0, 1)
    return Image.fromarray((blended * 255).round().to(torch.uint8).numpy(), mode="RGB")


def model_size(model: nn.Module) -> tuple[int, tuple[int, int]]:
    """Input channels and image size the model was built for (its ``channels``, ``init_config``)."""
    config = getattr(model, "init_config", {}) or {}
    channels = getattr(model, "channels", None)
    channels = channels if isinstance(channels, int) and not isinstance(channels, bool) else config.get("channels", 3)
    size = config.get("image_size", getattr(model, "image_size", None))
    if size is None:
        raise TypeError(f"{type(model).__name__} records no image_size, so the input cannot be resized for it")
    h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return int(channels), (int(h), int(w))


def draw(model: nn.Module, image_path: str | Path, out: str | Path, method: str = "rollout") -> Tensor:
    """Write the attention ``method`` of ``model`` on ``image_path`` over the image to the PNG ``out``
    (the input's size); returns the map."""
    channels, size = model_size(model)
    image, x = read_image(image_path, channels, size)
    model.eval()
    heat = attention_map(model, x, method)
    overlay(image, heat).save(out, format="PNG")
    return heat
