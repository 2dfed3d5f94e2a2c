"""``vit attention``: where a model looks, drawn over the input image as a PNG.

Two maps from the attention that :class:`vit_core.Recorder` records:

* ``last``: the last layer's attention of the class token (of the mean query when the model has no
  prefix token) over the patches, averaged over heads;
* ``rollout``: attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers",
  arXiv 2005.00928): per layer the head-averaged attention plus the identity (the residual path),
  rows renormalised, multiplied through the layers; the class token's row over the patches.

What a model declares on :class:`~vit_core.models.base.VisionModel` changes what is read
(``class_attention_trunk``, ``token_attention``, ``attention_branches``); see :func:`attention_map`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.models.base import VisionModel

METHODS = ("rollout", "last")


def _tokenizer(model: nn.Module) -> Any:
    tokenize = getattr(model, "tokenize", None)
    if not callable(tokenize):
        raise TypeError(
            f"{type(model).__name__} has no tokenize(x) (the encoder protocol of ViT-like patch models), "
            "so its attention cannot be placed on the image"
        )
    return tokenize


def _grid_and_prefix(model: nn.Module, x: Tensor) -> tuple[tuple[int, int], int]:
    _, grid = _tokenizer(model)(x)
    if len(grid) != 2:
        raise TypeError(f"{type(model).__name__} cuts a {len(grid)}-D token grid; vit attention draws 2-D images")
    return (int(grid[0]), int(grid[1])), int(getattr(model, "num_prefix_tokens", 0))


def attention_map(model: nn.Module, x: Tensor, method: str = "rollout") -> Tensor:
    """``(grid_h, grid_w)`` map, summing to 1, of where ``model`` attends on the single image ``x`` ``(1, c, h, w)``.

    Three declarations of a :class:`~vit_core.models.base.VisionModel` change what is read (a module that
    is not a ``VisionModel`` gets their defaults):

    * ``class_attention_trunk``: the name of its submodule of class-attention layers (CaiT, XCiT),
      whose recorded maps are the class token's over ``[itself, patches]``.  ``last`` is then the
      last of those layers' map over the patches, ``rollout`` their rollout (the patches do not
      change there; the class token keeps half of its own path at each layer) carried through the
      rollout of the patch layers below;
    * ``token_attention``: ``False`` when ``Recorder(model)``'s maps are not distributions over
      tokens (XCiT's cross-covariance maps are channel to channel, DeepViT's re-attention maps are
      normalised across heads): the patch layers are then left out, or the model refused;
    * ``attention_branches``: how many recorded maps make one layer (Parallel ViT's branches,
      summed into the layer's residual: their sum plus the identity is the layer's rollout step,
      their mean its ``last`` map).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1, channels, height, width), got shape {tuple(x.shape)}")
    grid, prefix = _grid_and_prefix(model, x)
    patches = grid[0] * grid[1]
    declared = model if isinstance(model, VisionModel) else VisionModel
    class_trunk, token_attention = declared.class_attention_trunk, declared.token_attention
    if class_trunk is None:
        if not token_attention:
            raise TypeError(
                f"{type(model).__name__}'s recorded maps are no distributions over its tokens (it declares "
                "token_attention = False), so they cannot be drawn on the image"
            )
        joint = _patch_rollout(model, x, grid, prefix, method)
        return _normalised(joint[0] if prefix else joint.mean(0), prefix, grid)
    weights = _class_attention(model, x, model.get_submodule(class_trunk), patches, method)
    if method == "rollout" and token_attention:
        weights = weights @ _patch_rollout(model, x, grid, prefix, method)[prefix:, prefix:]
    return _normalised(weights, 0, grid)


def _normalised(row: Tensor, prefix: int, grid: tuple[int, int]) -> Tensor:
    """``row``'s weights on the patch tokens (after ``prefix`` others) as a ``grid`` map summing to 1."""
    weights = row[prefix:].clamp_min(0)
    return (weights / weights.sum().clamp_min(1e-12)).reshape(grid)


def _recorded_layers(model: nn.Module, x: Tensor, **recorder: Any) -> Tensor:
    """The head-averaged maps ``(layers, queries, keys)`` that :class:`Recorder` records on ``x``."""
    from vit_core.tools.recorder import Recorder

    with torch.no_grad():
        _, attention = Recorder(model, **recorder)(x)
    if isinstance(attention, Tensor):
        return attention[0].float().mean(1)
    sizes = sorted({tuple(a.shape[-2:]) for a in attention})
    if len(sizes) > 1:
        raise TypeError(
            f"{type(model).__name__}'s layers attend over different token counts {sizes} (it drops tokens "
            "on the way), so its attention cannot be placed on the image grid"
        )
    return torch.stack([a[0] for a in attention]).float().mean(1)


def _patch_rollout(model: nn.Module, x: Tensor, grid: tuple[int, int], prefix: int, method: str) -> Tensor:
    """``(tokens, tokens)``: the last layer's map (``last``) or the rollout through every layer."""
    layers = _recorded_layers(model, x)
    branches = (model if isinstance(model, VisionModel) else VisionModel).attention_branches
    layers = layers.reshape(-1, branches, *layers.shape[-2:]).mean(1)  # the branches of a layer, averaged
    tokens = prefix + grid[0] * grid[1]
    if layers.shape[-1] != tokens or layers.shape[-2] != tokens:
        raise TypeError(
            f"{type(model).__name__}'s attention is over {tuple(layers.shape[-2:])} tokens, not the "
            f"{prefix} prefix + {tokens - prefix} patch tokens of its grid {grid}: it cannot be drawn on the image"
        )
    if method == "last":
        return layers[-1]
    eye = torch.eye(tokens, device=layers.device, dtype=layers.dtype)
    joint = eye
    for layer in layers:
        mixed = branches * layer + eye  # the branches' sum, and the residual
        joint = (mixed / mixed.sum(-1, keepdim=True)) @ joint
    return joint


def _class_attention(model: nn.Module, x: Tensor, trunk: nn.Module, patches: int, method: str) -> Tensor:
    """``(patches,)``: the class token's weight on each patch token after its class-attention layers."""
    layers = _recorded_layers(model, x, layer=trunk)
    if layers.shape[-2:] != (1, 1 + patches):
        raise TypeError(
            f"{type(model).__name__}'s class attention is over {tuple(layers.shape[-2:])}, not the class token "
            f"over itself and {patches} patches"
        )
    rows = layers[:, 0]  # (layers, 1 + patches)
    if method == "last":
        return rows[-1, 1:]
    weights = rows.new_zeros(patches)
    for row in rows:  # the class token: half its own path (residual + attention to itself), half the patches
        weights = (1 + row[0]) / 2 * weights + row[1:] / 2
    return weights


def read_image(path: str | Path, pretrained_cfg: Mapping[str, Any]) -> tuple[Any, Tensor]:
    """The part of the image (RGB, at its own resolution) the model sees after resizing and cropping, and the
    model's input ``(1, ...)``, preprocessed as ``pretrained_cfg`` describes
    (:func:`vit_core.training.data.create_transform`)."""
    from vit_core.training.data.decode import decode
    from vit_core.training.data.preprocess import create_transform

    preprocess = create_transform(pretrained_cfg)
    image = decode(path, "RGB")
    box = preprocess.transform.source_box(*image.size)
    seen = image.crop(tuple(round(v) for v in box))
    return seen, preprocess(image).unsqueeze(0)


def default_pretrained_cfg(channels: int, size: tuple[int, int]) -> dict[str, Any]:
    """The preprocessing of a model that records none: the whole image resized (bilinear), [0, 1] -> [-1, 1]."""
    return {
        "input_size": [channels, *size],
        "mean": [0.5] * channels,
        "std": [0.5] * channels,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
    }


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


def _input_arguments(model: nn.Module) -> tuple[str, str]:
    """The constructor arguments of the input's channels and size: its registry entry's
    ``channels_arg`` and ``size_arg`` (CCT: ``n_input_channels``, ``img_size``), else the usual names."""
    from vit_core.registry import UnknownModelError, get_registry

    try:
        info = get_registry().info_for_class(type(model))
    except UnknownModelError:
        return "channels", "image_size"
    return info.channels_arg, info.size_arg


def model_size(model: nn.Module) -> tuple[int, tuple[int, int]]:
    """Input channels and image size the model was built for (its ``init_config``, under the
    arguments its registry entry names; else its ``channels`` and ``image_size``)."""
    config = getattr(model, "init_config", {}) or {}
    channels_arg, size_arg = _input_arguments(model)
    channels = config.get(channels_arg, getattr(model, "channels", None))
    channels = channels if isinstance(channels, int) and not isinstance(channels, bool) else 3
    size = config.get(size_arg, getattr(model, "image_size", None))
    if size is None:
        raise TypeError(f"{type(model).__name__} records no {size_arg}, so the input cannot be resized for it")
    h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return int(channels), (int(h), int(w))


def draw(model: nn.Module, image_path: str | Path, out: str | Path, method: str = "rollout") -> Tensor:
    """Write the attention ``method`` of ``model`` on ``image_path`` over the image to the PNG ``out``
    (the part of the image the model sees, at the image's resolution); returns the map."""
    _tokenizer(model)  # before the size: a model without a token grid is refused for that reason
    channels, size = model_size(model)
    cfg = getattr(model, "pretrained_cfg", None) or default_pretrained_cfg(channels, size)
    image, x = read_image(image_path, {**cfg, "input_size": [channels, *size]})
    model.eval()
    heat = attention_map(model, x, method)
    overlay(image, heat).save(out, format="PNG")
    return heat
