"""The evaluation preprocessing a ``pretrained_cfg`` describes (timm's vocabulary: ``input_size``, ``mean``,
``std``, ``interpolation``, ``crop_pct``), as one callable: feed a trained model images exactly as training
evaluated them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vit_core.training.data.batch import normalize
from vit_core.training.data.decode import decode, mode_for
from vit_core.training.data.transforms import EvalTransform

REQUIRED = ("input_size", "mean", "std", "interpolation", "crop_pct")


@dataclass(frozen=True)
class Preprocess:
    """``Preprocess(cfg)(path_or_image)`` -> a normalised float ``(c, h, w)`` tensor (``(c, frames, h, w)`` for a
    video model's ``input_size``: the image repeated over the frames)."""

    transform: EvalTransform
    mode: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    frames: int | None = None

    def __call__(self, image: Any) -> torch.Tensor:
        if isinstance(image, (str, Path)):
            image = decode(image, self.mode)
        else:  # a PIL image
            from vit_core.training.data.decode import convert

            image = convert(image, self.mode)
        x = normalize(self.transform(image).unsqueeze(0), self.mean, self.std)[0]
        return x.unsqueeze(1).expand(-1, self.frames, -1, -1).contiguous() if self.frames else x


def create_transform(pretrained_cfg: Mapping[str, Any]) -> Preprocess:
    """The evaluation transform of ``pretrained_cfg`` (what ``load_model(path).pretrained_cfg`` holds)."""
    missing = [key for key in REQUIRED if key not in pretrained_cfg]
    if missing:
        raise ValueError(f"pretrained_cfg lacks {', '.join(missing)} (keys: {', '.join(pretrained_cfg) or 'none'})")
    shape = tuple(pretrained_cfg["input_size"])
    channels, size = shape[0], (shape[-2], shape[-1])
    transform = EvalTransform(size, float(pretrained_cfg["crop_pct"]), pretrained_cfg["interpolation"])
    frames = shape[1] if len(shape) == 4 else None
    return Preprocess(
        transform, mode_for(channels), tuple(pretrained_cfg["mean"]), tuple(pretrained_cfg["std"]), frames
    )
