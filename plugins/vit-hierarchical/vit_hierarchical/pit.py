"""PiT: "Rethinking Spatial Dimensions of Vision Transformers" (Heo et al., arXiv 2103.16302).

What the paper changes in ViT: the token map shrinks and widens between stages, as in a CNN.
A pooling layer between stages applies a stride-2 depth-wise convolution (doubling the
channels) and a point-wise one to the patch tokens laid out as a map; the class token, which
has no place on the map, goes through a linear layer of the same widening.  Patches overlap
(stride ``patch_size // 2``).

timm's ``PoolingVisionTransformer`` (``pit_ti_224`` ... ``pit_b_224``, and the distilled ones) is this
model with options: ``pool_pointwise=False`` (its pooling has no point-wise convolution),
``cls_position=False`` (its class token has no position), ``qkv_bias=True``, ``norm_eps=1e-6`` and, for
the distilled ones, ``distill_token=True`` (see :mod:`vit_hierarchical.pretrained`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from vit_core.layers import LearnedPositionalEmbedding, Transformer, layer_norm
from vit_core.models.base import parameter_names
from vit_core.models.resizing import enable_dynamic, resize_positions
from vit_core.validation import check_positive_int, check_positive_ints, check_probability
from vit_hierarchical.stages import HierarchicalModel, to_nchw, to_nhwc
from vit_hierarchical.validation import as_pair, conv_side, per_stage, stage_count

PiTState = tuple[Tensor, tuple[int, int]]
"""Tokens ``(b, prefix + h * w, c)`` (class token, then the distillation token if any, first) and the
patch grid ``(h, w)``."""


class TokenPool(nn.Module):
    """Halve the patch-token map and double the width: depth-wise stride-2 3x3 convolution
    (``dim -> 2 dim``, two filters per channel) then a point-wise one (none with ``pointwise=False``,
    as timm's PiT); the ``prefix`` leading tokens (class, distillation) through one linear layer."""

    def __init__(self, dim: int, *, pointwise: bool = True, prefix: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1, groups=dim)
        self.pointwise = nn.Conv2d(2 * dim, 2 * dim, 1) if pointwise else nn.Identity()
        self.cls = nn.Linear(dim, 2 * dim)
        self.prefix = prefix

    def forward(self, state: PiTState) -> PiTState:
        tokens, (h, w) = state
        b, _, c = tokens.shape
        fmap = to_nchw(tokens[:, self.prefix :].reshape(b, h, w, c))
        fmap = self.pointwise(self.depthwise(fmap))
        grid = (fmap.shape[2], fmap.shape[3])
        patches = to_nhwc(fmap).reshape(b, grid[0] * grid[1], 2 * c)
        return torch.cat((self.cls(tokens[:, : self.prefix]), patches), dim=1), grid


class PiTStage(nn.Module):
    """``pool`` (from the second stage on), then a core Transformer over class and patch tokens."""

    def __init__(self, transformer: Transformer, dim: int, reduction: int, pool: TokenPool | None) -> None:
        super().__init__()
        self.pool = pool if pool is not None else nn.Identity()
        self.transformer = transformer
        self.dim, self.reduction = dim, reduction

    def forward(self, state: PiTState) -> PiTState:
        tokens, grid = self.pool(state)
        return self.transformer(tokens), grid


class PiT(HierarchicalModel):
    """PiT over ``(batch, channels, height, width)`` images; arguments as vit-pytorch's ``pit.PiT``.

    ``depth`` is a tuple of blocks per stage; ``dim`` the first stage's width (doubled by every
    pooling layer); ``heads`` and ``mlp_dim`` an int or one per stage (the paper's models widen
    the MLP with the stage: PiT-Ti is ``mlp_dim=(256, 512, 1024)``); ``dim_head`` holds for every
    stage.  ``forward_features`` returns the tokens ``(b, 1 + h * w, c)`` (class token first), and
    so does ``forward_intermediates`` for each stage (``output_fmt="NLC"``, the default);
    ``output_fmt="NCHW"`` gives each stage's patch tokens as a map ``(b, c, h, w)``.  Images up to ``image_size``
    are accepted (smaller ones use the matching window of the positional grid); ``dynamic_img_size=True``
    takes any side from ``patch_size`` up, the learned positions resampled from their 2-D grid (as
    :class:`vit_core.ViT`; the token pools halve any map), and :meth:`set_input_size` resamples them for good.

    Options for timm's PiT (the defaults are vit-pytorch's): ``pool_pointwise=False`` leaves out the
    pooling's point-wise convolution, ``cls_position=False`` the class token's position; ``qkv_bias`` and
    ``norm_eps`` (every LayerNorm's); ``distill_token=True`` adds DeiT's distillation token after the
    class token (pooled alike) with its own head, the two heads' outputs averaged (timm's inference).
    """

    stage_blocks = "transformer.layers"

    output_formats = ("NLC", "NCHW", "NHWC")

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int,
        num_classes: int,
        dim: int,
        depth: tuple[int, ...],
        heads: int | tuple[int, ...],
        mlp_dim: int | tuple[int, ...],
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        channels: int = 3,
        dynamic_img_size: bool = False,
        pool_pointwise: bool = True,
        cls_position: bool = True,
        qkv_bias: bool = False,
        norm_eps: float = 1e-5,
        distill_token: bool = False,
    ) -> None:
        size = as_pair("image_size", image_size)
        check_positive_int("patch_size", patch_size)
        if patch_size < 2:
            raise ValueError(
                f"patch_size must be at least 2 (patches overlap at stride patch_size // 2), got {patch_size}"
            )
        depths = stage_count("depth", depth)
        stage_heads = per_stage("heads", heads, len(depths), check=check_positive_int)
        mlp_dims = per_stage("mlp_dim", mlp_dim, len(depths), check=check_positive_int)
        check_positive_ints(dim=dim, dim_head=dim_head, channels=channels)
        check_probability("dropout", dropout)
        for name, flag in (
            ("pool_pointwise", pool_pointwise),
            ("cls_position", cls_position),
            ("qkv_bias", qkv_bias),
            ("distill_token", distill_token),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if isinstance(norm_eps, bool) or not isinstance(norm_eps, (int, float)) or not norm_eps > 0:
            raise ValueError(f"norm_eps must be a positive number, got {norm_eps!r}")
        super().__init__(channels=channels, rule=self._side_problem)
        self.image_size, self.patch_size, self.stride = size, patch_size, patch_size // 2
        grid = self.position_grid(size)
        self.patch_embed = nn.Conv2d(channels, dim, patch_size, stride=self.stride)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, dim)) if cls_position else None
        self.dist_token = nn.Parameter(torch.randn(1, 1, dim)) if distill_token else None
        self.num_prefix_tokens = 1 + int(distill_token)
        self.pos_embed = LearnedPositionalEmbedding(grid, dim, init_std=1.0)
        self.dynamic_img_size = enable_dynamic(self, self.pos_embed, dynamic_img_size)
        self.dropout = nn.Dropout(check_probability("emb_dropout", emb_dropout))
        stages, width, reduction = [], dim, self.stride
        for i, (stage_depth, stage_head, stage_mlp) in enumerate(zip(depths, stage_heads, mlp_dims)):
            if i:
                width, reduction = 2 * width, 2 * reduction
            trunk = Transformer(
                width,
                stage_depth,
                stage_head,
                dim_head,
                stage_mlp,
                dropout,
                final_norm=False,
                qkv_bias=qkv_bias,
                norm=lambda d: layer_norm(d, eps=norm_eps),
            )
            pool = TokenPool(width // 2, pointwise=pool_pointwise, prefix=self.num_prefix_tokens) if i else None
            stages.append(PiTStage(trunk, width, reduction, pool))
        self.stages = nn.ModuleList(stages)
        self.build_head(num_classes, fc_norm=nn.LayerNorm(width, eps=norm_eps))
        self.head_dist = self.make_head(num_classes) if distill_token else None

    def _side_problem(self, side: int, axis: int) -> str | None:
        if self.dynamic_img_size and side >= self.patch_size:
            return None
        if self.patch_size <= side <= self.image_size[axis]:
            return None
        if self.dynamic_img_size:
            return f"sides must be at least patch_size={self.patch_size}"
        return f"the learned positions cover sides from patch_size={self.patch_size} up to image_size {self.image_size}"

    def position_grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """The patch grid of an image of ``size`` (overlapping patches at stride ``patch_size // 2``)."""
        grid = tuple(conv_side(s, self.patch_size, self.stride) for s in size)
        if min(grid) < 1:
            raise ValueError(f"image_size {size} is smaller than patch_size={self.patch_size}")
        return grid

    def set_input_size(self, image_size: int | tuple[int, int], interpolation: str = "bicubic") -> None:
        """Run at ``image_size`` from now on: the learned positions resampled from their 2-D grid (see
        :mod:`vit_core.models.resizing`); ``init_config`` follows, so ``save_model`` saves the resized model."""
        size = as_pair("image_size", image_size)
        grid = self.position_grid(size)
        resize_positions(self, self.pos_embed, grid, interpolation, size_name="image_size", size=size)
        self.image_size = size

    def stage_states(self, img: Tensor) -> Iterator[PiTState]:
        self.check_input(img)
        patches = self.patch_embed(img)
        grid = (patches.shape[2], patches.shape[3])
        tokens = to_nhwc(patches).reshape(img.shape[0], grid[0] * grid[1], -1) + self.pos_embed(grid)
        prefix = self.cls_token if self.cls_pos is None else self.cls_token + self.cls_pos
        if self.dist_token is not None:
            prefix = torch.cat((prefix, self.dist_token), dim=1)
        prefix = prefix.expand(img.shape[0], -1, -1)
        state: PiTState = (self.dropout(torch.cat((prefix, tokens), dim=1)), grid)
        for stage in self.stages:
            state = stage(state)
            yield state

    def stage_output(self, state: PiTState, output_fmt: str, norm: bool) -> Tensor:
        """``"NLC"``: the tokens ``(b, prefix + h * w, c)``; ``"NCHW"`` / ``"NHWC"``: the patch tokens as a map."""
        tokens, (h, w) = state
        if output_fmt == "NLC":
            return tokens
        fmap = tokens[:, self.num_prefix_tokens :].reshape(tokens.shape[0], h, w, tokens.shape[-1])
        return to_nchw(fmap) if output_fmt == "NCHW" else fmap

    def stage_features(self, state: PiTState) -> Tensor:
        return state[0]

    def pool_features(self, features: Tensor) -> Tensor:
        if self.dist_token is None:
            return self.fc_norm(features[:, 0])
        return (self.fc_norm(features[:, 0]) + self.fc_norm(features[:, 1])) / 2

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """The class token's logits; with a distillation token, the mean of its head's and the class head's."""
        if self.head_dist is None or pre_logits:
            return super().forward_head(features, pre_logits)
        return (self.head(self.fc_norm(features[:, 0])) + self.head_dist(self.fc_norm(features[:, 1]))) / 2

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.dist_token is not None:
            self.head_dist = None if self.head is None else self.make_head(num_classes).to(self.head.weight)

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | parameter_names(self, "dist_token")
