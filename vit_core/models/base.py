"""The one interface every registered model implements, first- or third-party.

* ``forward_features(x)``: tokens (or per-stage feature maps) before pooling;
* ``forward_head(features, pre_logits=False)``: pool and classify; ``pre_logits=True`` returns the
  pooled vector of width ``num_features``;
* ``reset_classifier(num_classes)``: a fresh classifier (``0`` removes it);
* ``num_features``: width of the pooled vector;
* ``forward(x) == forward_head(forward_features(x))``;
* ``forward_intermediates(x, indices=None, norm=False, output_fmt="NLC", intermediates_only=False)``
  (timm's meaning): ``(final, intermediates)``, the features after chosen blocks (single-scale
  models: tokens ``(batch, tokens, dim)``) or stages (hierarchical models: maps
  ``(batch, channels, height, width)``), and ``final == forward_features(x)``; ``feature_info``
  describes each (``module``, ``num_chs``, ``reduction``).

With ``num_classes=0`` a model is a feature extractor: ``forward_head`` returns the features
unchanged (the token sequence for ViT, as vit-pytorch does).  Trainers and tools rely on this
interface and on the public ``transformer`` attribute, never on private names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from vit_core.interop.saving import record_init_config
from vit_core.validation import check_choice, check_non_negative_int

OUTPUT_FORMATS = ("NLC", "NCHW")


def check_output_fmt(output_fmt: str, spatial_dims: int = 2) -> str:
    """``output_fmt`` of ``forward_intermediates``: ``"NLC"`` tokens, or ``"NCHW"`` maps of 2-D inputs."""
    check_choice("output_fmt", output_fmt, OUTPUT_FORMATS)
    if output_fmt == "NCHW" and spatial_dims != 2:
        raise ValueError(f"output_fmt='NCHW' needs 2-D inputs; this model's inputs have {spatial_dims} spatial axes")
    return output_fmt


def trunk_intermediates(
    trunk: nn.Module, tokens: Tensor, indices: Any, *, norm: bool, intermediates_only: bool, **trunk_kwargs: Any
) -> Any:
    """``forward_intermediates``' result for a model whose features are ``trunk(tokens)``."""
    if not callable(getattr(trunk, "forward_intermediates", None)):
        raise TypeError(
            f"forward_intermediates needs a trunk with forward_intermediates (vit_core.layers.Transformer); "
            f"{type(trunk).__name__} has none"
        )
    final, hidden = trunk.forward_intermediates(
        tokens, indices, norm=norm, stop_early=intermediates_only, **trunk_kwargs
    )
    return hidden if intermediates_only else (final, hidden)


def block_feature_info(trunk: nn.Module, num_chs: int, reduction: int, prefix: str = "transformer") -> list[dict]:
    """``feature_info`` of a single-scale model: one entry per block of ``trunk.layers``."""
    layers = getattr(trunk, "layers", ())
    return [{"module": f"{prefix}.layers.{i}", "num_chs": num_chs, "reduction": reduction} for i in range(len(layers))]


class VisionModel(nn.Module):
    """Base class implementing ``forward`` and ``reset_classifier`` on top of ``pool`` and ``head``."""

    num_features: int
    num_classes: int
    head: nn.Module | None
    init_config: dict[str, Any]
    """The keyword arguments the model was built with (``vit_core.save_model`` writes them)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        record_init_config(cls)

    def forward_features(self, x: Any) -> Tensor:
        raise NotImplementedError

    def pool_features(self, features: Tensor) -> Tensor:
        """Features -> ``(batch, num_features)``."""
        raise NotImplementedError

    def make_head(self, num_classes: int) -> nn.Module | None:
        return nn.Linear(self.num_features, num_classes) if num_classes else None

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        if pre_logits:
            return self.pool_features(features)
        if self.head is None:
            return features
        return self.head(self.pool_features(features))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)

    def forward(self, x: Any) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: Any,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
    ) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward_intermediates")

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One entry per intermediate :meth:`forward_intermediates` can return."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its features (feature_info)")
