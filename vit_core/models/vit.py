"""ViT: "An Image is Worth 16x16 Words" (Dosovitskiy et al., arXiv 2010.11929)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from vit_core.layers import (
    LatentAttentionPool,
    LearnedPositionalEmbedding,
    PatchEmbedding,
    Transformer,
    activation_by_name,
)
from vit_core.layers.transformer import is_observed, layer_norm
from vit_core.models.patch_model import PATCH_POOLS, PatchTransformer, check_image_patches
from vit_core.validation import check_choice, check_positive_ints


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
    **options: Any,
) -> nn.Module:
    """The trunk of a ViT-style model ``owner``: ``transformer=`` itself when given (a module over tokens of
    width ``dim``), else the default :class:`~vit_core.layers.Transformer`, which needs ``depth``, ``heads``
    and ``mlp_dim``; ``options`` are further keyword arguments of that Transformer."""
    if transformer is not None:
        check_trunk_width(transformer, dim)
        return transformer
    missing = [n for n, v in (("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)) if v is None]
    if missing:
        raise TypeError(f"{owner} needs {', '.join(missing)} unless transformer= is given")
    check_positive_ints(heads=heads, mlp_dim=mlp_dim, dim_head=dim_head)
    return Transformer(dim, depth, heads, dim_head, mlp_dim, dropout, attention=attention, **options)


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

    Options for the checkpoints of timm and Hugging Face (``vit_core.load_pretrained``); each default is
    vit-pytorch's behaviour, so they change nothing unless given:

    * ``patch_norm=False``: the plain linear patch embedding (timm's convolution) instead of
      ``LayerNorm -> Linear -> LayerNorm``; ``patch_bias=False`` drops its bias (CLIP);
    * ``qkv_bias``: bias on the fused qkv projection; ``norm_eps``: every LayerNorm's ``eps``
      (timm uses 1e-6, Hugging Face's ViT 1e-12);
    * ``norm_pre``: a LayerNorm before the blocks (CLIP); ``final_norm=False``: no norm after them;
      ``fc_norm``: a LayerNorm on the pooled vector (MAE fine-tuning, BEiT; default: only with
      ``transformer=``);
    * ``layer_scale``: LayerScale on both branches of every block, with this initial gain (CaiT, DINOv2);
    * ``registers``: register tokens after the class token, without positions (arXiv 2309.16588);
    * ``class_token``: whether there is a class token (default: with ``pool="cls"``);
    * ``pool``: ``"cls"``, ``"mean"`` (every token, vit-pytorch), ``"avg"`` (patch tokens only, timm's
      ``global_pool="avg"``) or ``"map"`` (attention pooling with a learned latent query, SigLIP);
    * ``activation``: the MLP's ``"gelu"``, ``"gelu_tanh"`` (SigLIP), ``"quick_gelu"`` (OpenAI CLIP) or
      ``"swiglu"`` (a gated MLP whose hidden width is ``mlp_dim``: DINOv2-giant);
    * ``distill_token``: DeiT's distillation token with a head of its own; the logits average both heads.
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
        patch_norm: bool = True,
        patch_bias: bool = True,
        qkv_bias: bool = False,
        norm_eps: float = 1e-5,
        norm_pre: bool = False,
        final_norm: bool = True,
        fc_norm: bool | None = None,
        layer_scale: float | None = None,
        registers: int = 0,
        class_token: bool | None = None,
        activation: str = "gelu",
        distill_token: bool = False,
    ) -> None:
        image_size, patch_size, grid = check_image_patches(image_size, patch_size, dim=dim, channels=channels)
        check_choice("pool", pool, PATCH_POOLS)
        for flag, value in (
            ("patch_norm", patch_norm),
            ("patch_bias", patch_bias),
            ("qkv_bias", qkv_bias),
            ("norm_pre", norm_pre),
            ("final_norm", final_norm),
            ("distill_token", distill_token),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool, got {value!r}")
        for flag, value in (("fc_norm", fc_norm), ("class_token", class_token)):
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool or None, got {value!r}")
        if isinstance(norm_eps, bool) or not isinstance(norm_eps, (int, float)) or not norm_eps > 0:
            raise ValueError(f"norm_eps must be a positive float (the LayerNorms' eps), got {norm_eps!r}")
        act, gated = activation_by_name(activation)
        if transformer_options is not None and not isinstance(transformer, str):
            raise TypeError("transformer_options configures a backend named by transformer='name'; pass a name")
        trunk_args = dict(depth=depth, heads=heads, mlp_dim=mlp_dim, dim_head=dim_head, dropout=dropout)
        if isinstance(transformer, str):
            transformer = build_backend(transformer, transformer_options, dim=dim, **trunk_args)
        custom = transformer is not None
        if custom and attention is not None:
            raise TypeError("attention= configures the default trunk; it cannot be combined with transformer=")
        block_options = dict(qkv_bias=qkv_bias, final_norm=final_norm, layer_scale=layer_scale, activation=activation)
        block_defaults = dict(qkv_bias=False, final_norm=True, layer_scale=None, activation="gelu")
        if custom and (changed := [k for k, v in block_options.items() if v != block_defaults[k]]):
            raise TypeError(
                f"{', '.join(changed)} configure the default trunk; they cannot be combined with transformer="
            )
        norm = functools.partial(layer_norm, eps=float(norm_eps))
        trunk_options = {} if custom else dict(block_options, activation=act, gated_mlp=gated, norm=norm)
        transformer = resolve_trunk("ViT", transformer, dim=dim, attention=attention, **trunk_args, **trunk_options)
        attention_pool = None
        if pool == "map":
            if heads is None or mlp_dim is None:
                raise TypeError("pool='map' builds its attention pool from heads and mlp_dim; pass both")
            attention_pool = LatentAttentionPool(
                dim, heads, dim_head, mlp_dim, norm_eps=float(norm_eps), activation=act, gated=gated
            )
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
            fc_norm=custom if fc_norm is None else fc_norm,
            class_token=class_token,
            patch_embed=PatchEmbedding(
                channels,
                patch_size,
                dim,
                patch_norm=patch_norm,
                out_norm=patch_norm,
                bias=patch_bias,
                recompute=patch_norm,
            ),
            dynamic_img_size=dynamic_img_size,
            norm_eps=float(norm_eps),
            norm_pre=norm_pre,
            registers=registers,
            distill_token=distill_token,
            attention_pool=attention_pool,
        )
        self.prune_last_block = not custom

    def head_reads_leading_tokens(self) -> int | None:
        if self.pool != "cls" or self.head is None:
            return None
        return 2 if self.dist_token is not None else 1

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
