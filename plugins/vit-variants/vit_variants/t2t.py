"""T2T-ViT: "Tokens-to-Token ViT: Training Vision Transformers from Scratch on ImageNet" (Yuan et al.,
arXiv 2101.11986).

What the paper changes in ViT: the tokens are not cut from the image in one step.  A
tokens-to-token module splits the image into overlapping windows ("soft split", an unfold with
kernel ``k`` and stride ``s``), re-structures the token sequence with a one-layer transformer,
folds it back to an image and splits again; each split concatenates the ``k * k`` neighbouring
tokens, so local structure is modelled and the sequence gets shorter.  The last split is
projected to the model width, then the usual class token, positions, encoder and head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.layers import LearnedPositionalEmbedding, Transformer
from vit_core.models.patch_model import PatchTransformer
from vit_core.models.vit import resolve_trunk
from vit_core.validation import as_tuple, check_positive_ints

DEFAULT_T2T_LAYERS = ((7, 4), (3, 2), (3, 2))


def split_size(size: int, kernel: int, stride: int) -> int:
    """Tokens along one axis after a soft split of ``size`` (padding ``stride // 2``, as the paper's code)."""
    return (size + 2 * (stride // 2) - kernel) // stride + 1


def check_t2t_layers(t2t_layers: object) -> tuple[tuple[int, int], ...]:
    """``t2t_layers``: a non-empty sequence of ``(kernel_size, stride)`` pairs of positive ints."""
    layers = tuple(t2t_layers) if isinstance(t2t_layers, Sequence) and not isinstance(t2t_layers, str) else None
    if not layers or not all(
        isinstance(layer, Sequence) and len(layer) == 2 and all(isinstance(v, int) and v > 0 for v in layer)
        for layer in layers
    ):
        raise ValueError(
            "t2t_layers must be a non-empty sequence of (kernel_size, stride) pairs of positive ints, "
            f"got {t2t_layers!r}"
        )
    return tuple((int(k), int(s)) for k, s in layers)


class TokensToToken(nn.Module):
    """``(batch, channels, height, width) -> (batch, tokens, dim)``: soft splits with one-layer
    transformers between them, then a linear projection.

    :meth:`soft_split` gives the last split's ``(batch, tokens, patch_dim)`` windows ("raw patches"),
    :meth:`embed_patches` projects them.
    """

    def __init__(self, channels: int, dim: int, layers: Sequence[tuple[int, int]], dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = tuple(layers)
        widths = [channels]
        for kernel, _ in self.layers:
            widths.append(widths[-1] * kernel * kernel)
        self.patch_dim = widths[-1]
        self.mixers = nn.ModuleList(
            Transformer(width, 1, heads=1, dim_head=width, mlp_dim=width, dropout=dropout) for width in widths[1:-1]
        )
        self.proj = nn.Linear(self.patch_dim, dim)

    def output_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        """The token grid of an input of spatial ``size``; an entry <= 0 means the input is too small."""
        grid = tuple(size)
        for kernel, stride in self.layers:
            grid = tuple(split_size(n, kernel, stride) for n in grid)
        return grid

    def soft_split(self, x: Tensor) -> Tensor:
        grid = tuple(x.shape[2:])
        for i, (kernel, stride) in enumerate(self.layers):
            if i:
                x = x.transpose(1, 2).reshape(x.shape[0], -1, *grid)
            x = F.unfold(x, kernel, padding=stride // 2, stride=stride).transpose(1, 2)
            grid = tuple(split_size(n, kernel, stride) for n in grid)
            if i < len(self.mixers):
                x = self.mixers[i](x)
        return x

    def embed_patches(self, patches: Tensor) -> Tensor:
        return self.proj(patches)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed_patches(self.soft_split(x))


class T2TViT(PatchTransformer):
    """ViT on tokens from a tokens-to-token module.  Arguments as vit-pytorch's ``t2t.T2TViT``.

    ``t2t_layers``: the ``(kernel_size, stride)`` of each soft split.  ``transformer=`` replaces the
    encoder (then ``depth``, ``heads``, ``mlp_dim``, ``dim_head`` are not used).  Images may be
    smaller than ``image_size`` (the matching window of the positional grid is used) as long as at
    least one token is left; ``dynamic_img_size=True`` takes larger ones too, the positions resampled
    from their 2-D grid to the soft splits' token grid, and ``set_input_size`` resamples them for good.
    """

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        num_classes: int,
        dim: int,
        depth: int | None = None,
        heads: int | None = None,
        mlp_dim: int | None = None,
        pool: str = "cls",
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        transformer: nn.Module | None = None,
        t2t_layers: Sequence[tuple[int, int]] = DEFAULT_T2T_LAYERS,
        dynamic_img_size: bool = False,
    ) -> None:
        image_size = as_tuple("image_size", image_size)
        check_positive_ints(dim=dim, channels=channels)
        layers = check_t2t_layers(t2t_layers)
        tokenizer = TokensToToken(channels, dim, layers, dropout)
        grid = tokenizer.output_grid(image_size)
        if min(grid) <= 0:
            raise ValueError(
                f"t2t_layers={list(layers)} shrink image_size {image_size} below one token (token grid {grid}); "
                "use a larger image or fewer / smaller-stride layers"
            )
        transformer = resolve_trunk(
            "T2TViT",
            transformer,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            dim_head=dim_head,
            dropout=dropout,
        )
        stride = math.prod(s for _, s in layers)
        super().__init__(
            input_size=image_size,
            patch_size=(stride, stride),
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool=pool,
            positional=LearnedPositionalEmbedding(grid, dim),
            transformer=transformer,
            emb_dropout=emb_dropout,
            class_token=True,
            patch_embed=tokenizer,
            dynamic_img_size=dynamic_img_size,
        )

    def patches(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x``; the last soft split's windows ``(batch, tokens, patch_dim)`` and the token grid."""
        grid = self.patch_grid(x)
        return self.patch_embed.soft_split(x), grid
