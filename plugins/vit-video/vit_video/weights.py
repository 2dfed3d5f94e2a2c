"""The importer of vit-pytorch's ViViT state dicts (see :mod:`vit_core.interop.reference`).

Use it through ``vit_core.load_reference_weights(model, reference.state_dict())``.  vit-pytorch
flattens video patches as ``(pf p1 p2 c)``, which is already our ``(frame, height, width, channel)``
layout (:func:`vit_core.layers.patchify`), so patch weights load unpermuted, and the 3D ViT, 3D
SimpleViT and 3D CCT load through the core's importers of their 2-D forms (``import_vit``,
``import_simple_vit``, ``import_cct``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from vit_core.interop.reference import HEAD_RULES, PATCH_RULES, TRANSFORMER_RULES, StateDict, rename

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
