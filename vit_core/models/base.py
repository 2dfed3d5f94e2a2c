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

What a model may declare beyond the interface is declared on :class:`VisionModel`, with the
default every model gets (see its docstring); what a trainer may declare is the protocol
:class:`MovingAverageTrainer`.  A model records the keyword arguments it was built with as
``init_config`` (:mod:`vit_core.models.init_config`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from vit_core.models.init_config import record_init_config
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


def names_match(name: str, pattern: str) -> bool:
    """Whether the parameter ``name`` is named by ``pattern``: the parameter itself, a submodule holding it
    (``"transformer.layers.0"``), or an ``fnmatch`` pattern with ``*`` (``"*.relative_bias.table"``)."""
    if "*" in pattern or "?" in pattern:
        return fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")


def parameter_names(module: nn.Module, *patterns: str) -> set[str]:
    """The names of ``module``'s parameters that any of ``patterns`` names (see :func:`names_match`); a
    pattern naming nothing (an absent class token) adds nothing."""
    return {name for name, _ in module.named_parameters() if any(names_match(name, p) for p in patterns)}


def present(module: nn.Module, names: Iterable[str]) -> tuple[str, ...]:
    """The ``names`` (parameters or submodules, dotted) that hold at least one parameter of ``module``."""
    return tuple(name for name in names if parameter_names(module, name))


def layer_blocks(trunk: nn.Module, prefix: str) -> tuple[tuple[str, ...], ...]:
    """One block per layer of ``trunk.layers`` (a core :class:`~vit_core.layers.Transformer`), named under
    ``prefix``; a trunk without a ``layers`` list (a registered backend) is one block."""
    layers = getattr(trunk, "layers", None)
    if isinstance(layers, nn.ModuleList):
        return tuple((f"{prefix}.layers.{i}",) for i in range(len(layers)))
    return ((prefix,),)


@dataclass(frozen=True)
class BlockOrder:
    """A model's parameters in depth order, for layer-wise learning-rate decay (BEiT, MAE fine-tuning).

    Each entry is a name as :func:`names_match` reads it (a parameter, a submodule, or an ``fnmatch`` pattern).
    ``stem``: what comes before the first block (patch embedding, positions, class and register tokens);
    ``blocks``: each block's names, from the input to the output.  Parameters named nowhere (the final norm,
    the head) come after the last block and keep the full learning rate.
    """

    stem: tuple[str, ...]
    blocks: tuple[tuple[str, ...], ...]

    def depth_of(self, name: str) -> int:
        """The depth of the parameter ``name``: 0 for the stem, ``i + 1`` for block ``i``, ``len(blocks) + 1``
        for parameters named nowhere.  The longest name that names it decides (a stage's name can gather
        its layers outside the blocks, each block's own name being longer)."""
        depth, longest = len(self.blocks) + 1, -1
        for i, group in enumerate((self.stem, *self.blocks)):
            for pattern in group:
                if len(pattern) > longest and names_match(name, pattern):
                    depth, longest = i, len(pattern)
        return depth


class VisionModel(nn.Module):
    """Base class implementing ``forward`` and ``reset_classifier`` on top of ``pool`` and ``head``.

    What a model may declare, each with the default every model gets; override it in a subclass
    (class attribute or property) where the model differs.  The tools read these declarations and
    the conformance kit checks them (its ``declarations`` check):

    * :attr:`parameters_outside_forward`: name prefixes of parameters that ``forward`` does not use
      (a trainer reaches them through another method, e.g. a distillation token);
    * :attr:`class_attention_trunk`: the submodule of class-attention layers, for ``vit attention``;
    * :attr:`token_attention`: whether ``Recorder(model)``'s maps are distributions over tokens;
    * :attr:`attention_branches`: how many recorded maps make one layer;
    * :meth:`head_reads_leading_tokens`: how many leading tokens ``forward_head`` reads, when that is
      all it reads (the last block then runs for those tokens only);
    * :meth:`no_weight_decay`: the parameters of two or more dimensions trained without weight decay
      (positions, class/register/memory/distillation tokens, relative-bias tables);
    * :meth:`block_order`: the parameters in depth order, for ``vit train --layer-decay``.
    """

    num_features: int
    num_classes: int
    head: nn.Module | None
    init_config: dict[str, Any]
    """The keyword arguments the model was built with (``vit_core.save_model`` writes them)."""

    parameters_outside_forward: tuple[str, ...] = ()
    """Name prefixes (``"distill_token"``, ``"distill_head."``) of trainable parameters that ``forward``
    does not use: the conformance kit's ``gradients`` check leaves them out; each must prefix a parameter."""

    class_attention_trunk: str | None = None
    """The (dotted) name of the submodule holding the model's class-attention layers (CaiT, XCiT), whose
    recorded maps are the class token's over ``[itself, patches]``: ``vit attention`` draws those
    (see :func:`vit_core.tools.attention_map.attention_map`).  ``None``: the model has none."""

    token_attention: bool = True
    """``False`` when the maps ``Recorder(model)`` records are not distributions over the tokens (XCiT's
    channel-to-channel maps, DeepViT's re-attention normalised across heads): ``vit attention`` then
    leaves the patch layers out, or refuses the model."""

    attention_branches: int = 1
    """How many consecutive recorded maps make one layer (Parallel ViT's parallel branches, summed into
    the layer's residual); ``vit attention`` sums them into one rollout step."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        record_init_config(cls)

    def head_reads_leading_tokens(self) -> int | None:
        """How many leading tokens of ``forward_features``' output ``forward_head`` reads, when that is all it
        reads (``1``: the class token with ``pool="cls"``); ``None`` (the default): every token.

        A model that declares ``n`` may compute only the first ``n`` tokens in its last block
        (:class:`vit_core.ViT` does), so the declaration must be exact; the conformance kit checks
        that the head's output does not change when any later token does.
        """
        return None

    def no_weight_decay(self) -> set[str]:
        """The names of parameters trained without weight decay beyond the 1-D ones (biases, norm gains,
        which the optimizer never decays): positional embeddings, class, register, memory and distillation
        tokens, relative-bias tables (timm's name and meaning).  Default: none.

        Each name must be a parameter of the model (the conformance kit's ``parameter-groups`` check);
        :func:`parameter_names` turns submodule names and patterns into them."""
        return set()

    def block_order(self) -> BlockOrder | None:
        """The model's parameters in depth order (:class:`BlockOrder`), which ``vit train --layer-decay``
        reads; ``None`` (the default): the model declares no order and layer decay refuses it."""
        return None

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
        """A fresh classifier for ``num_classes`` (``0`` removes it), on the old head's device and dtype (else
        the first parameter's), so a model on a GPU or in bf16 keeps running."""
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        like = next((p for p in (self.head.parameters() if self.head is not None else ())), None)
        like = like if like is not None else next(self.parameters(), None)
        if like is None:
            self.head = self.make_head(num_classes)
            return
        with like.device:  # built there: no CPU copy to move
            head = self.make_head(num_classes)
        self.head = None if head is None else head.to(dtype=like.dtype)

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


@runtime_checkable
class MovingAverageTrainer(Protocol):
    """A trainer that keeps a moving average of weights (a DINO / EsViT teacher) declares this method.

    ``vit train`` (and any training loop) calls ``update_moving_average()`` once after each optimiser
    step when the trainer has it; a trainer without it is trained by its loss alone.  Under
    ``DistributedDataParallel`` call it on the module, on every process.  The conformance kit calls
    it after the backward passes of its trainer ``gradients`` check.
    """

    def update_moving_average(self) -> None:
        """Move the averaged weights (and any running statistics) towards the trained ones."""
