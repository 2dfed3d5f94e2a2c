"""ViT: "An Image is Worth 16x16 Words" (Dosovitskiy et al., arXiv 2010.11929)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from vit_core.layers import LearnedPositionalEmbedding, Transformer
from vit_core.layers.transformer import is_observed
from vit_core.models.patch_model import PatchTransformer, check_image_patches
from vit_core.validation import check_positive_ints


def trunk_width(module: nn.Module) -> int | None:
    """The token width a trunk expects: its ``dim`` attribute, else its first LayerNorm's or Linear's
    input width; ``None`` when it shows none."""
    dim = getattr(module, "dim", None)
    if isinstance(dim, int) and not isinstance(dim, bool):
        return dim
    for m in module.modules():
        if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
            return m.normalized_shape[0]
        if isinstance(m, nn.Linear):
            return m.in_features
    return None


def check_trunk_width(transformer: object, dim: int) -> None:
    """``transformer=`` must be a module over tokens of width ``dim``."""
    if not isinstance(transformer, nn.Module):
        raise TypeError(f"transformer must be an nn.Module, got {type(transformer).__name__}")
    width = trunk_width(transformer)
    if width is not None and width != dim:
        raise ValueError(
            f"transformer={type(transformer).__name__} works on tokens of width {width}, but dim={dim}; "
            "build the trunk with the model's dim"
        )


def build_backend(name: str, options: Mapping[str, Any] | None = None, **trunk: Any) -> nn.Module:
    """Build the registered backend ``name`` (``kind="backend"``) with the ViT-style ``trunk`` arguments
    (``dim``, ``depth``, ``heads``, ...) and its own ``options``, from the factory's defaults."""
    from vit_core.registry import ModelLookupError, get_registry

    registry = get_registry()
    backends = [i.name for i in registry.list(kind="backend")]
    try:
        info = registry.info(name)
    except ModelLookupError as exc:
        raise ValueError(f"transformer={name!r} is not a registered backend ({exc}); registered: {backends}") from None
    if info.kind != "backend":
        raise ValueError(f"transformer={name!r} is a {info.kind}, not a backend; registered backends: {backends}")
    if trunk.get("depth") is None:
        raise TypeError(f"ViT(transformer={name!r}) needs depth")
    given = {k: v for k, v in trunk.items() if v is not None}
    return info.load_class()(**given, **dict(options or {}))


def resolve_trunk(
    owner: str,
    transformer: nn.Module | None,
    *,
    dim: int,
    depth: int | None,
    heads: int | None,
    mlp_dim: int | None,
    dim_head: int,
    dropout: float,
    attention: Callable[..., nn.Module] | None = None,
) -> nn.Module:
    """The trunk of a ViT-style model ``owner``: ``transformer=`` itself when given (a module over tokens of
    width ``dim``), else the default :class:`~vit_core.layers.Transformer`, which needs ``depth``, ``heads``
    and ``mlp_dim``."""
    if transformer is not None:
        check_trunk_width(transformer, dim)
        return transformer
    missing = [n for n, v in (("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)) if v is None]
    if missing:
        raise TypeError(f"{owner} needs {', '.join(missing)} unless transformer= is given")
    check_positive_ints(heads=heads, mlp_dim=mlp_dim, dim_head=dim_head)
    return Transformer(dim, depth, heads, dim_head, mlp_dim, dropout, attention=attention)


class ViT(PatchTransformer):
    """The original vision transformer: class token (or mean pooling), learned positions.

    Arguments keep the names of vit-pytorch's ``ViT``.  ``transformer=`` replaces the trunk by any
    module mapping ``(batch, tokens, dim)`` to the same shape (e.g. an efficient-attention
    encoder); then ``depth``, ``heads``, ``mlp_dim``, ``dim_head`` and ``dropout`` are not used
    and the pooled vector is LayerNorm-ed before the head, since such trunks need not end with a
    norm.  Images smaller than ``image_size`` use the matching top-left window of the positional
    grid; ``dynamic_img_size=True`` instead takes any size the patches divide, larger ones too, with
    the positions resampled (bicubic, in float32) from the 2-D grid (timm's meaning), and
    :meth:`~vit_core.models.patch_model.PatchTransformer.set_input_size` resamples them for good.
    ``num_classes=0`` makes ``forward`` return the token features ``(batch, tokens, dim)``.
    ``transformer="name"`` builds the registered backend of that name (``vit list --kind backend``)
    with this model's ``dim`` and the ``depth``, ``heads``, ``dim_head``, ``mlp_dim`` and ``dropout``
    given, plus the backend's own ``transformer_options``.  ``attention=`` (an
    :class:`~vit_core.layers.Attention` subclass) replaces the attention of every default block,
    for variants that change only the attention.

    When the head reads only leading tokens (:meth:`head_reads_leading_tokens`: the class token
    with ``pool="cls"``), ``forward`` runs the last block's queries, output projection and MLP for
    those tokens only: the same logits and gradients for about ``1 / depth`` less work.  It is
    decided by what the model and the trunk declare: the trunk must declare ``supports_queries``
    (a core :class:`~vit_core.layers.Transformer` of core blocks does), and a subclass that changes
    what the head reads must declare its own ``head_reads_leading_tokens`` (until it does, every
    block runs in full).  The full last block also runs whenever a Recorder or a module hook
    watches the trunk (e.g. an Extractor), for a ``transformer=`` trunk, and when
    ``prune_last_block`` is set to ``False``.
    """

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
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
        transformer: nn.Module | str | None = None,
        transformer_options: Mapping[str, Any] | None = None,
        attention: Callable[..., nn.Module] | None = None,
        dynamic_img_size: bool = False,
    ) -> None:
        image_size, patch_size, grid = check_image_patches(image_size, patch_size, dim=dim, channels=channels)
        if transformer_options is not None and not isinstance(transformer, str):
            raise TypeError("transformer_options configures a backend named by transformer='name'; pass a name")
        trunk_args = dict(depth=depth, heads=heads, mlp_dim=mlp_dim, dim_head=dim_head, dropout=dropout)
        if isinstance(transformer, str):
            transformer = build_backend(transformer, transformer_options, dim=dim, **trunk_args)
        custom = transformer is not None
        if custom and attention is not None:
            raise TypeError("attention= configures the default trunk; it cannot be combined with transformer=")
        transformer = resolve_trunk("ViT", transformer, dim=dim, attention=attention, **trunk_args)
        super().__init__(
            input_size=image_size,
            patch_size=patch_size,
            channels=channels,
            dim=dim,
            num_classes=num_classes,
            pool=pool,
            positional=LearnedPositionalEmbedding(grid, dim),
            transformer=transformer,
            emb_dropout=emb_dropout,
            fc_norm=custom,
            dynamic_img_size=dynamic_img_size,
        )
        self.prune_last_block = not custom

    def head_reads_leading_tokens(self) -> int | None:
        return 1 if self.pool == "cls" and self.head is not None else None

    def forward(self, img: Tensor) -> Tensor:
        queries = self.pruned_queries()
        if queries is None:
            return self.forward_head(self.forward_features(img))
        return self.forward_head(self.encode_input(img, queries=queries))

    def pruned_queries(self) -> int | None:
        """The ``queries=`` the trunk runs its last block with in ``forward``, or ``None`` (every token)."""
        queries = self.head_reads_leading_tokens()
        if queries is None or not self.prune_last_block:
            return None
        if not getattr(self.transformer, "supports_queries", False) or is_observed(self.transformer):
            return None
        return queries
