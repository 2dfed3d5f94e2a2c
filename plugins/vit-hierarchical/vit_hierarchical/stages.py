"""The multi-stage backbone every model of this plugin is built on.

A hierarchical model is a stem, a sequence of :class:`Stage` s (each one resolution: optional
downsampling, then blocks), global average pooling and a linear head.  Inside the model, feature
maps travel channels-last, ``(batch, height, width, channels)``: attention and feed-forward blocks
read them as tokens without copying, and convolutions run on the same memory through
:class:`ChannelsLast` (a permuted view; PyTorch's convolutions accept that memory format).

:class:`HierarchicalModel` gives every model the same backbone interface:
``forward_features(img)`` is the last stage's map ``(batch, channels, height, width)``,
``forward_intermediates`` every stage's map, ``feature_info`` each stage's channels and
reduction, and ``num_classes=0`` a feature extractor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vit_core.layers import resolve_indices
from vit_core.models.base import BlockOrder, VisionModel, parameter_names, present
from vit_core.validation import check_choice, check_non_negative_int
from vit_hierarchical.validation import SideRule, check_image


def to_nchw(x: Tensor) -> Tensor:
    """``(b, h, w, c)`` -> ``(b, c, h, w)`` view."""
    return x.permute(0, 3, 1, 2)


def to_nhwc(x: Tensor) -> Tensor:
    """``(b, c, h, w)`` -> ``(b, h, w, c)`` view."""
    return x.permute(0, 2, 3, 1)


class ChannelsLast(nn.Module):
    """Run a module written for ``(b, c, h, w)`` maps (convolutions, BatchNorm) on a ``(b, h, w, c)`` map."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return to_nhwc(self.module(to_nchw(x)))


class MapOutput(nn.Module):
    """``(b, h, w, c)`` map -> ``(b, c, h, w)`` view: the un-pooled features ``forward_features`` returns,
    as a module without parameters, so that a hook (:class:`vit_core.Extractor`, a trainer's
    ``hidden_layer``) reads them by the module's name (CvT's ``layers``, vit-pytorch's name)."""

    def forward(self, x: Tensor) -> Tensor:
        return to_nchw(x)


class TokenMapBlock(nn.Module):
    """A token block ``(b, n, c) -> (b, n, c)`` (a core TransformerBlock) run on a ``(b, h, w, c)`` map;
    the block is told the map's grid (``grid=(h, w)``) for convolutional projections."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        return self.block(x.reshape(b, h * w, c), grid=(h, w)).view(b, h, w, c)


class Stage(nn.Module):
    """One resolution: ``downsample`` (if any), the ``blocks`` in order, then ``norm`` (if any).

    Maps in and out are ``(batch, height, width, channels)``.  ``dim`` and ``reduction`` (the
    stride of the output map relative to the input image) describe the output for ``feature_info``.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        *,
        dim: int,
        reduction: int,
        downsample: nn.Module | None = None,
        norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm if norm is not None else nn.Identity()
        self.dim, self.reduction = dim, reduction

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def pyramid_stage(
    blocks: Sequence[nn.Module], index: int, count: int, width: int, downsample: nn.Module | None
) -> Stage:
    """Stage ``index`` of ``count`` of a pyramid whose maps start at reduction 4 and halve at every stage
    (ScalableViT, SepViT): a LayerNorm ends every stage but the last."""
    norm = nn.LayerNorm(width) if index < count - 1 else None
    return Stage(blocks, dim=width, reduction=4 * 2**index, downsample=downsample, norm=norm)


class HierarchicalModel(VisionModel):
    """``stem -> stages -> mean over the map -> fc_norm -> head``, with the backbone interface.

    Subclasses build ``stem`` (a convolutional module, image ``(b, c, h, w)`` -> map
    ``(b, c', h', w')``; or override :meth:`embed`) and ``stages`` and call :meth:`build_head`;
    ``rule(side, axis)`` says whether an input side fits the model's stride and window arithmetic.
    ``map_norm`` normalises the last map before pooling (NesT); ``fc_norm`` the pooled vector.
    """

    stem: nn.Module
    stages: nn.ModuleList
    output_formats: ClassVar[tuple[str, ...]] = ("NCHW", "NHWC")
    """Formats ``forward_intermediates`` gives, the default first."""
    channels_arg: ClassVar[str] = "channels"
    """The constructor argument of the image's channel count (named in input errors)."""
    stage_blocks: ClassVar[str] = "blocks"
    """The list of blocks inside each stage (``"layers"``, ``"transformer.layers"``), for :meth:`block_order`."""

    def __init__(self, *, channels: int, rule: SideRule) -> None:
        super().__init__()
        self.channels = channels
        self._rule = rule

    def no_weight_decay(self) -> set[str]:
        """Class token, learned positions (the model's or a block's), relative-bias tables and attention
        offset biases (timm's ``relative_position_bias_table``, ``attention_biases``)."""
        return parameter_names(
            self, "cls_token", "cls_pos", "pos_embed", "*.pos_embed.*", "*.relative_bias.table", "*.offset_bias"
        )

    def block_order(self) -> BlockOrder | None:
        """Stem: the model's own parameters and what runs before the stages; blocks: each stage's blocks in
        order, the stage's other layers (downsampling, pooling, relative bias, norm) with its first block."""
        names = list(self._modules)
        stem = (*(n for n, _ in self.named_parameters(recurse=False)), *names[: names.index("stages")])
        blocks: list[tuple[str, ...]] = []
        for s, stage in enumerate(self.stages):
            prefix = f"stages.{s}.{self.stage_blocks}"
            count = len(stage.get_submodule(self.stage_blocks))
            blocks += [(f"stages.{s}", f"{prefix}.0"), *((f"{prefix}.{b}",) for b in range(1, count))]
        return BlockOrder(present(self, stem), tuple(blocks))

    def build_head(
        self,
        num_classes: int,
        *,
        fc_norm: nn.Module | None = None,
        map_norm: nn.Module | None = None,
        head_bias: bool = True,
    ) -> None:
        self.num_features = self.stages[-1].dim
        self.map_norm = map_norm if map_norm is not None else nn.Identity()
        self.fc_norm = fc_norm if fc_norm is not None else nn.Identity()
        self.head_bias = head_bias
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        self.head = self.make_head(num_classes)

    def make_head(self, num_classes: int) -> nn.Module | None:
        return nn.Linear(self.num_features, num_classes, bias=self.head_bias) if num_classes else None

    def check_input(self, img: Any) -> tuple[int, int]:
        """Validate ``img`` (type, rank, channels, and each side against the model's arithmetic)."""
        return check_image(
            img, channels=self.channels, rule=self._rule, model=type(self).__name__, channels_name=self.channels_arg
        )

    def embed(self, img: Tensor) -> Tensor:
        """Image -> the first stage's input map ``(b, h, w, c)``.

        The image is copied channels-last first (0.4 ms for 8 images at 224): the maps travel in
        that layout anyway, and oneDNN's convolutions on a 3-channel NCHW image are up to 10x
        slower (a 3x3 stride-2 stem at 224: 8.9 ms against 0.9 ms)."""
        return to_nhwc(self.stem(img.contiguous(memory_format=torch.channels_last)))

    def stage_states(self, img: Tensor) -> Iterator[Any]:
        """Each stage's output, in order: here the ``(b, h, w, c)`` map (a model carrying more, such
        as PiT's class token, yields its own state and overrides :meth:`stage_output` and
        :meth:`stage_features`)."""
        self.check_input(img)
        x = self.embed(img)
        for stage in self.stages:
            x = stage(x)
            yield x

    def stage_output(self, state: Any, output_fmt: str, norm: bool) -> Any:
        """A stage's output as :meth:`forward_intermediates` returns it: the map, ``(b, c, h, w)`` for
        ``"NCHW"`` or ``(b, h, w, c)`` for ``"NHWC"``; ``norm`` applies the final map norm."""
        fmap = self.map_norm(state) if norm else state
        return to_nchw(fmap) if output_fmt == "NCHW" else fmap

    def stage_features(self, state: Any) -> Any:
        """The last stage's output as ``forward_features`` returns it: the normalised map ``(b, c, h, w)``."""
        return to_nchw(self.map_norm(state))

    def forward_features(self, img: Tensor) -> Any:
        """The last stage's map ``(batch, channels, height, width)``, after the final map norm (if any)."""
        state = None
        for state in self.stage_states(img):  # noqa: B007 - the last state is the output
            pass
        return self.stage_features(state)

    def pool_features(self, features: Tensor) -> Tensor:
        return self.fc_norm(features.mean(dim=(2, 3)))

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One entry per stage: ``{"module": "stages.i", "num_chs": channels, "reduction": stride}``."""
        return [
            {"module": f"stages.{i}", "num_chs": stage.dim, "reduction": stage.reduction}
            for i, stage in enumerate(self.stages)
        ]

    def forward_intermediates(
        self,
        img: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str | None = None,
        intermediates_only: bool = False,
    ) -> tuple[Any, list[Any]] | list[Any]:
        """``(forward_features(img), outputs)``: the outputs of the stages chosen by ``indices``
        (``None``: all; ``n``: the last ``n``; or a sequence of indices).  ``output_fmt``: one of
        :attr:`output_formats`, the first by default (maps ``(b, c, h, w)``).  ``norm`` applies the
        final map norm (NesT's; none in the other models) to the last stage's output, which then
        equals ``forward_features``."""
        fmt = self.output_formats[0] if output_fmt is None else output_fmt
        check_choice("output_fmt", fmt, self.output_formats)
        chosen = set(resolve_indices(indices, len(self.stages), "stages"))
        last = len(self.stages) - 1
        outputs, state = [], None
        for i, state in enumerate(self.stage_states(img)):
            if i in chosen:
                outputs.append(self.stage_output(state, fmt, norm and i == last))
        if intermediates_only:
            return outputs
        return self.stage_features(state), outputs
