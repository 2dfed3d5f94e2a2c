"""Importers of vit-pytorch video-model state dicts (see :mod:`vit_core.interop.reference`).

Use them through ``vit_core.load_reference_weights(model, reference.state_dict())``.  vit-pytorch
flattens video patches as ``(pf p1 p2 c)``, which is already our ``(frame, height, width, channel)``
layout (:func:`vit_core.layers.patchify`), so patch weights load unpermuted.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from vit_core.interop.reference import (
    HEAD_RULES,
    PATCH_RULES,
    TRANSFORMER_RULES,
    StateDict,
    rename,
    rename_transformer,
)

_KEEP_TRANSFORMER = (r"(transformer\..*)", r"\1")


def import_vit3d(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.vit_3d.ViT`` -> :class:`vit_video.ViT3D`."""
    state = dict(state)
    dim = model.num_features
    pos = state.pop("pos_embedding").reshape(-1, dim)
    cls = state.pop("cls_token").reshape(-1, dim)
    out = rename_transformer(rename(state, [*PATCH_RULES, *HEAD_RULES, _KEEP_TRANSFORMER]))
    out["cls_token"], out["cls_pos"] = cls, pos[:1]
    out["pos_embed.weight"] = pos[1:].reshape(model.pos_embed.weight.shape)
    return out


def import_simple_vit3d(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.simple_vit_3d.SimpleViT`` -> :class:`vit_video.SimpleViT3D`."""
    state = dict(state)
    return rename_transformer(rename(state, [*PATCH_RULES, *HEAD_RULES, _KEEP_TRANSFORMER]))


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


def import_cct3d(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.cct_3d.CCT`` -> :class:`vit_video.CCT3D`.

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


FACTORIZED_RULES: list[tuple[str, str]] = [
    (r"layers\.(\d+)\.0\.norm\.(weight|bias)", r"layers.\1.spatial_norm.\2"),
    (r"layers\.(\d+)\.0\.to_qkv\.weight", r"layers.\1.spatial_attn.to_qkv.weight"),
    (r"layers\.(\d+)\.0\.to_out\.0\.(weight|bias)", r"layers.\1.spatial_attn.to_out.\2"),
    (r"layers\.(\d+)\.1\.norm\.(weight|bias)", r"layers.\1.temporal.attn_norm.\2"),
    (r"layers\.(\d+)\.1\.to_qkv\.weight", r"layers.\1.temporal.attn.to_qkv.weight"),
    (r"layers\.(\d+)\.1\.to_out\.0\.(weight|bias)", r"layers.\1.temporal.attn.to_out.\2"),
    (r"layers\.(\d+)\.2\.net\.0\.(weight|bias)", r"layers.\1.temporal.ff_norm.\2"),
    (r"layers\.(\d+)\.2\.net\.1\.(weight|bias)", r"layers.\1.temporal.ff.fc1.\2"),
    (r"layers\.(\d+)\.2\.net\.4\.(weight|bias)", r"layers.\1.temporal.ff.fc2.\2"),
    (r"norm\.(weight|bias)", r"norm.\1"),
]


def _subtree(state: StateDict, prefix: str) -> StateDict:
    """Pop the keys under ``prefix`` and return them with the prefix stripped."""
    return {k[len(prefix) :]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}


def import_vivit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.vivit.ViViT`` (either variant) -> :class:`vit_video.ViViT`."""
    state = dict(state)
    dim = model.num_features
    out: StateDict = {"pos_embed.weight": state.pop("pos_embedding").reshape(model.pos_embed.weight.shape)}
    tokens = (("spatial_cls_token", "spatial_cls"), ("temporal_cls_token", "transformer.temporal_cls"))
    for ref_key, our_key in tokens:
        if ref_key in state:
            out[our_key] = state.pop(ref_key).reshape(1, dim)
    for ref_prefix, our_prefix in (
        ("spatial_transformer.", "transformer.spatial."),
        ("temporal_transformer.", "transformer.temporal."),
    ):
        inner = rename(_subtree(state, ref_prefix), TRANSFORMER_RULES)
        out.update({our_prefix + k: v for k, v in inner.items()})
    inner = rename(_subtree(state, "factorized_transformer."), FACTORIZED_RULES)
    out.update({"transformer." + k: v for k, v in inner.items()})
    out.update(rename(state, [*PATCH_RULES, *HEAD_RULES]))
    return out
