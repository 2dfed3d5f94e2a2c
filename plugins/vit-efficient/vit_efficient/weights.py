"""Importers of vit-pytorch state dicts (see :mod:`vit_core.interop.reference`).

Use them through ``vit_core.load_reference_weights(model, reference.state_dict())``.  ``ats_vit.ViT``
has exactly the layout of ``vit.ViT`` (its sampler has no weights), so ``ats-vit`` registers the
core's :func:`vit_core.interop.reference.import_vit`, which also imports ``efficient.ViT`` into
``vit_core.ViT(transformer=...)`` (a named backend's :class:`~vit_efficient.backends.CheckedTrunk`
accepts the package module's keys).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor, nn

from vit_core.interop.reference import StateDict, rename_patch_model


def _module_prefix(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module) + "."


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
    out = rename_patch_model(state)
    out.update(moved)
    out["pos_embed.weight"] = pos.reshape(model.pos_embed.weight.shape)
    return out
