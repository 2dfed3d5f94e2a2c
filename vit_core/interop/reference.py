"""Weight import from vit-pytorch state dicts.

Each registered model may name an importer (``ModelInfo.importer``, a lazy ``"module:function"``
target).  An importer takes the reference state dict and our freshly built model and returns a
state dict for ``model.load_state_dict``; :func:`load_reference_weights` finds the importer
through the registry and loads the result strictly, so a missed key is an error, never silent.

The helpers here (key renaming, patch-layout permutation, qkv fusion) are shared by the
plugins' importers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from vit_core.registry import Registry

StateDict = dict[str, Tensor]


def rename(state: Mapping[str, Tensor], rules: Iterable[tuple[str, str]]) -> StateDict:
    """Rename keys by the first matching ``(regex, replacement)``; an empty replacement drops the key,
    and a key no rule matches is an error."""
    rules = [(re.compile(pattern), repl) for pattern, repl in rules]
    out: StateDict = {}
    for key, value in state.items():
        for pattern, repl in rules:
            if pattern.fullmatch(key):
                new = pattern.sub(repl, key)
                if new:
                    out[new] = value
                break
        else:
            raise KeyError(f"no import rule for reference weight {key!r}")
    return out


def permute_patch_dim(
    weight: Tensor, axis: int, source: Sequence[str], sizes: Mapping[str, int], target: Sequence[str]
) -> Tensor:
    """Reorder a flattened patch axis (e.g. ``("c", "p1", "p2")`` -> ``("p1", "p2", "c")``)."""
    shape = list(weight.shape)
    split = shape[:axis] + [sizes[name] for name in source] + shape[axis + 1 :]
    order = list(range(axis)) + [axis + source.index(n) for n in target]
    order += list(range(axis + len(source), len(split)))
    return weight.reshape(split).permute(order).reshape(shape)


def concat_weights(state: StateDict, prefix: str, names: Sequence[str], out: str = "to_qkv.weight") -> None:
    """Replace the weights ``names`` under ``prefix`` by their concatenation (rows) ``out``,
    e.g. separate q / k / v projections by one fused ``to_qkv``."""
    state[prefix + out] = torch.cat([state.pop(prefix + name) for name in names], dim=0)


TRANSFORMER_RULES: list[tuple[str, str]] = [
    (r"(.*)layers\.(\d+)\.0\.norm\.(weight|bias|gamma|beta)", r"\1layers.\2.attn_norm.\3"),
    (r"(.*)layers\.(\d+)\.0\.to_qkv\.(weight|bias)", r"\1layers.\2.attn.to_qkv.\3"),
    (r"(.*)layers\.(\d+)\.0\.to_out\.0\.(weight|bias)", r"\1layers.\2.attn.to_out.\3"),
    (r"(.*)layers\.(\d+)\.0\.to_out\.(weight|bias)", r"\1layers.\2.attn.to_out.\3"),
    (r"(.*)layers\.(\d+)\.0\.(q_norm|k_norm)\.weight", r"\1layers.\2.attn.\3.weight"),
    (r"(.*)layers\.(\d+)\.1\.(?:net\.)?0\.(weight|bias|gamma|beta)", r"\1layers.\2.ff_norm.\3"),
    (r"(.*)layers\.(\d+)\.1\.(?:net\.)?1\.(weight|bias)", r"\1layers.\2.ff.fc1.\3"),
    (r"(.*)layers\.(\d+)\.1\.(?:net\.)?[34]\.(weight|bias)", r"\1layers.\2.ff.fc2.\3"),
    (r"(.*)norm\.(weight|bias|gamma|beta)", r"\1norm.\2"),
]
"""vit-pytorch's ``Transformer`` (pre-norm inside ``Attention`` and ``FeedForward``) -> ours."""

PARAM = r"(weight|bias)"
"""A rule's pattern for the parameters of a linear, convolution or norm layer (one group)."""


def block_pair_rules(
    attn: str, ff: str, attention: Iterable[tuple[str, str]] = (), prefix: str = ""
) -> list[tuple[str, str]]:
    r"""Rules for one vit-pytorch pre-norm residual pair -> one of our ``TransformerBlock`` s under ``prefix``.

    ``attn`` and ``ff`` are the patterns of the key prefixes of the reference's attention (its LayerNorm
    is ``norm``) and feed-forward (``LayerNorm, Linear, activation, dropout, Linear``: children 0, 1, 4),
    e.g. ``r"0\.fn\."`` and ``r"1\.net\."``, without groups.  ``attention``: ``(pattern, our name)``
    of the attention's other keys, below ``attn`` and ``{prefix}attn.``; an empty name drops the key.
    """
    return [
        (rf"{attn}norm\.{PARAM}", rf"{prefix}attn_norm.\1"),
        *((rf"{attn}{pattern}", rf"{prefix}attn.{ours}" if ours else "") for pattern, ours in attention),
        (rf"{ff}0\.{PARAM}", rf"{prefix}ff_norm.\1"),
        (rf"{ff}1\.{PARAM}", rf"{prefix}ff.fc1.\1"),
        (rf"{ff}4\.{PARAM}", rf"{prefix}ff.fc2.\1"),
    ]


PATCH_RULES: list[tuple[str, str]] = [
    (r"to_patch_embedding\.1\.(weight|bias)", r"patch_embed.patch_norm.\1"),
    (r"to_patch_embedding\.2\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"to_patch_embedding\.3\.(weight|bias)", r"patch_embed.norm.\1"),
]


def gamma_beta_to_weight(state: StateDict) -> StateDict:
    """vit-pytorch's bias-free LayerNorm stores ``gamma`` and a zero ``beta`` buffer: keep ``weight`` only."""
    out: StateDict = {}
    for key, value in state.items():
        if key.endswith(".beta") or key == "beta":
            continue
        out[re.sub(r"gamma$", "weight", key)] = value
    return out


HEAD_RULES: list[tuple[str, str]] = [
    (r"(?:mlp|linear)_head\.(weight|bias)", r"head.\1"),
    (r"mlp_head\.0\.(weight|bias)", r"fc_norm.\1"),
    (r"mlp_head\.1\.(weight|bias)", r"head.\1"),
]


def rename_transformer(state: StateDict, prefix: str = "transformer.") -> StateDict:
    """Rename, in place, the keys of a vit-pytorch ``Transformer`` stored under ``prefix``."""
    keys = [k for k in state if k.startswith(prefix)]
    inner = rename({k[len(prefix) :]: state.pop(k) for k in keys}, TRANSFORMER_RULES)
    state.update({prefix + k: v for k, v in inner.items()})
    return state


def import_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.vit.ViT`` -> ``vit_core.ViT``; ``vit_pytorch.efficient.ViT`` -> ``vit_core.ViT(transformer=...)``
    with the same third-party trunk (whose keys are kept as they are)."""
    from vit_core.layers import Transformer

    state = dict(state)
    pos = state.pop("pos_embedding").reshape(-1, model.num_features)
    cls = state.pop("cls_token").reshape(-1, model.num_features)
    out = rename(state, [*PATCH_RULES, *HEAD_RULES, (r"(transformer\..*)", r"\1")])
    if isinstance(model.transformer, Transformer):  # a third-party trunk keeps its own keys
        out = rename_transformer(out)
    if model.cls_token is not None:
        out["cls_token"], out["cls_pos"], pos = cls, pos[:1], pos[1:]
    out["pos_embed.weight"] = pos.reshape(model.pos_embed.weight.shape)
    return out


def rename_patch_model(state: Mapping[str, Tensor]) -> StateDict:
    """Rename a vit-pytorch ViT's patch embedding, head and ``Transformer`` keys (:data:`PATCH_RULES`,
    :data:`HEAD_RULES`, :data:`TRANSFORMER_RULES`); any other key is an error."""
    return rename_transformer(rename(state, [*PATCH_RULES, *HEAD_RULES, (r"(transformer\..*)", r"\1")]))


def import_simple_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.simple_vit.SimpleViT`` -> ``vit_core.SimpleViT``."""
    return rename_patch_model(state)


def import_navit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.na_vit.NaViT`` or ``vit_pytorch.na_vit_nested_tensor.NaViT`` -> ``vit_core.NaViT``.

    vit-pytorch flattens NaViT patches as ``(c p1 p2)``; ours are ``(p1 p2 c)``: the first
    LayerNorm and the patch projection are permuted to match.  The nested-tensor flavour (separate
    q / k / v projections, ``query_norm`` / ``key_norm``) needs a model built with
    :meth:`vit_core.NaViT.nested_tensor_flavour`.
    """
    state = gamma_beta_to_weight(dict(state))
    p, c = model.patch_size, model.channels
    to_ours = (("c", "p1", "p2"), {"c": c, "p1": p, "p2": p}, ("p1", "p2", "c"))
    for key in [k for k in state if k.startswith("to_patch_embedding.0.")]:
        state[key] = permute_patch_dim(state[key], 0, *to_ours)
    state["to_patch_embedding.1.weight"] = permute_patch_dim(state["to_patch_embedding.1.weight"], 1, *to_ours)
    for key in [k for k in state if k.endswith(("q_norm.weight", "k_norm.weight"))]:
        state[key] = state[key].squeeze(-2)
    for prefix in {k.removesuffix("to_queries.weight") for k in state if k.endswith("to_queries.weight")}:
        if prefix.startswith("transformer."):
            concat_weights(state, prefix, ("to_queries.weight", "to_keys.weight", "to_values.weight"))
        else:
            state[prefix + "to_q.weight"] = state.pop(prefix + "to_queries.weight")
            concat_weights(state, prefix, ("to_keys.weight", "to_values.weight"), out="to_kv.weight")
    for prefix in {k.removesuffix("to_q.weight") for k in state if k.endswith("to_q.weight")}:
        if prefix.startswith("transformer."):
            concat_weights(state, prefix, ("to_q.weight", "to_kv.weight"))
    state = {k.replace("query_norm.", "q_norm.").replace("key_norm.", "k_norm."): v for k, v in state.items()}
    return rename_transformer(
        rename(
            state,
            [
                (r"to_patch_embedding\.0\.(weight|bias)", r"patch_embed.patch_norm.\1"),
                (r"to_patch_embedding\.1\.(weight|bias)", r"patch_embed.proj.\1"),
                (r"to_patch_embedding\.2\.(weight|bias)", r"patch_embed.norm.\1"),
                (r"pos_embed_height", "pos_embed.tables.0"),
                (r"pos_embed_width", "pos_embed.tables.1"),
                (r"attn_pool_queries", "attn_pool.query"),
                (r"attn_pool\.norm\.weight", "attn_pool.norm.weight"),
                (r"attn_pool\.(q_norm|k_norm|to_q|to_kv)\.weight", r"attn_pool.attn.\1.weight"),
                (r"attn_pool\.to_out(?:\.0)?\.weight", "attn_pool.attn.to_out.weight"),
                (r"mlp_head\.(\d)\.weight", r"head.\1.weight"),
                (r"(transformer\..*)", r"\1"),
            ],
        )
    )


CCT_RULES: list[tuple[str, str]] = [
    (r"tokenizer\.conv_layers\.(\d+)\.0\.weight", r"tokenizer.stages.\1.conv.weight"),
    (r"classifier\.blocks\.(\d+)\.pre_norm\.(weight|bias)", r"transformer.layers.\1.attn_norm.\2"),
    (r"classifier\.blocks\.(\d+)\.self_attn\.qkv\.weight", r"transformer.layers.\1.attn.to_qkv.weight"),
    (r"classifier\.blocks\.(\d+)\.self_attn\.proj\.(weight|bias)", r"transformer.layers.\1.attn.to_out.\2"),
    (r"classifier\.blocks\.(\d+)\.norm1\.(weight|bias)", r"transformer.layers.\1.post_attn_norm.\2"),
    (r"classifier\.blocks\.(\d+)\.linear1\.(weight|bias)", r"transformer.layers.\1.ff.fc1.\2"),
    (r"classifier\.blocks\.(\d+)\.linear2\.(weight|bias)", r"transformer.layers.\1.ff.fc2.\2"),
    (r"classifier\.norm\.(weight|bias)", r"transformer.norm.\1"),
    (r"classifier\.attention_pool\.weight", r"seq_pool.score.weight"),
    (r"classifier\.attention_pool\.bias", ""),  # shifts every score alike: no effect on the softmax
    (r"classifier\.fc\.(weight|bias)", r"head.\1"),
]
"""vit-pytorch's CCT (its ``Tokenizer`` and ``TransformerClassifier``, 2-D and 3-D alike) -> the keys of
:class:`vit_core.models.cct.CompactTransformer`."""


def import_cct(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.cct.CCT`` (or a ``cct_N`` preset) or ``vit_pytorch.cct_3d.CCT`` -> a
    :class:`~vit_core.models.cct.CompactTransformer` (``vit_variants.CCT``, ``vit_video.CCT3D``).

    The fixed sine table (a saved buffer there, recomputed here) is dropped; a learned table is
    reshaped to ``(tokens, dim)``.
    """
    state = dict(state)
    pos = state.pop("classifier.positional_emb", None)
    out = rename(state, CCT_RULES)
    if model.positional_embedding == "learnable":
        if pos is None:
            raise KeyError("the model has learned positions but the reference state dict has none")
        out["pos_embed.weight"] = pos.reshape(model.pos_embed.weight.shape)
    return out


def load_reference_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor], name: str | None = None, *, registry: Registry | None = None
) -> nn.Module:
    """Load a vit-pytorch state dict into ``model`` (built with the same configuration) through the
    importer registered for the model's name (found from its class when ``name`` is omitted) in
    ``registry`` (default: the process-wide one).  A state dict of another configuration is a
    ``ValueError`` when the conversion meets a tensor of another shape, the ``RuntimeError`` of
    ``load_state_dict`` (naming each mismatched tensor) when the converted one does not fit."""
    from vit_core.registry import get_registry, resolve

    registry = registry if registry is not None else get_registry()
    info = registry.info(name) if name else registry.info_for_class(type(model))
    if not info.importer:
        raise ValueError(f"model {info.name!r} (plugin {info.plugin}) registers no weight importer")
    importer = resolve(info.importer)
    try:
        converted = importer(dict(state_dict), model)
    except RuntimeError as exc:  # a tensor of another shape than this configuration's, met while converting
        raise ValueError(
            f"the state dict does not fit this {type(model).__name__}: {info.importer} failed with "
            f"{type(exc).__name__}: {exc}; build the model with the configuration the reference "
            f"({info.reference or 'vit-pytorch'}) was built with, and pass the state dict of that class"
        ) from exc
    model.load_state_dict(converted, strict=True)
    return model
