"""Importers of vit-pytorch state dicts (see :mod:`vit_core.weights`).

Use them through ``vit_core.load_reference_weights(model, reference.state_dict())``.  ``ats_vit.ViT``
has exactly the layout of ``vit.ViT`` (its sampler has no weights), so ``ats-vit`` registers the
core's :func:`vit_core.weights.import_vit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor, nn

from vit_core.weights import HEAD_RULES, PATCH_RULES, StateDict, rename, rename_transformer
from vit_efficient.backends import CheckedTrunk


def _module_prefix(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module) + "."


def import_efficient_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.efficient.ViT`` -> ``vit_core.ViT(transformer=<the same kind of trunk>)``.

    The trunk's weights are the package's own and load unrenamed, under ``transformer.trunk.`` when
    the trunk was built by name (a :class:`~vit_efficient.backends.CheckedTrunk`).  vit-pytorch's
    ``pool="mean"`` averages its class token with the patch tokens, which ``vit_core.ViT`` does not
    have with mean pooling: only ``pool="cls"`` models import.
    """
    if model.cls_token is None:
        raise ValueError(
            "efficient.ViT keeps its class token with pool='mean' (and averages it in), vit_core.ViT(pool='mean') "
            "has none: import into a pool='cls' model"
        )
    state = dict(state)
    dim = model.num_features
    pos = state.pop("pos_embedding").reshape(-1, dim)
    cls = state.pop("cls_token").reshape(1, dim)
    trunk = "transformer.trunk." if isinstance(model.transformer, CheckedTrunk) else "transformer."
    out = rename(state, [*PATCH_RULES, *HEAD_RULES, (r"transformer\.(.*)", trunk + r"\1")])
    out["cls_token"], out["cls_pos"] = cls, pos[:1]
    out["pos_embed.weight"] = pos[1:].reshape(model.pos_embed.weight.shape)
    return out


def import_patch_merger_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.vit_with_patch_merger.ViT`` -> :class:`vit_efficient.PatchMergerViT`.

    vit-pytorch sizes its positional table for a class token it does not have and adds its first
    ``patches`` rows; those are imported, the unused last row is dropped.
    """
    state = dict(state)
    patches = math.prod(model.grid)
    pos = state.pop("pos_embedding").reshape(-1, model.num_features)[:patches]
    merger = _module_prefix(model, model.patch_merger)
    reference_merger = "transformer.patch_merger."
    moved = {merger + k[len(reference_merger) :]: state.pop(k) for k in list(state) if k.startswith(reference_merger)}
    out = rename_transformer(rename(state, [*PATCH_RULES, *HEAD_RULES, (r"(transformer\..*)", r"\1")]))
    out.update(moved)
    out["pos_embed.weight"] = pos.reshape(model.pos_embed.weight.shape)
    return out
