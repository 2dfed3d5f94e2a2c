"""The ``declarations`` check: what a model declares on :class:`~vit_core.models.base.VisionModel`
(``parameters_outside_forward``, ``class_attention_trunk``, ``token_attention``, ``attention_branches``,
``head_reads_leading_tokens()``) is well-formed and true of the model.  The tools trust these
declarations (``vit attention`` reads the maps they name, ViT prunes its last block by the head's), so a
wrong one gives wrong maps or wrong logits rather than an error; here it fails, naming the declaration."""

from __future__ import annotations

import torch
from torch import Tensor

from vit_core.models.base import VisionModel
from vit_core.testing.subject import Subject, build, describe, shape_of
from vit_core.tools.recorder import Recorder, records_attention

HEAD_TOLERANCE = 1e-5
"""Absolute tolerance of the head's output when the tokens it declares it does not read change."""


def check_declarations(s: Subject) -> None:
    """Each declaration of the model has its type and holds; a model that is not a ``VisionModel`` declares
    nothing (the tools give it the defaults) and passes."""
    model = build(s, "declarations").eval()
    if not isinstance(model, VisionModel):
        return
    _check_outside_parameters(s, model)
    _check_attention_declarations(s, model)
    _check_head_reads_leading_tokens(s, model)


def _check_outside_parameters(s: Subject, model: VisionModel) -> None:
    prefixes = model.parameters_outside_forward
    if not isinstance(prefixes, tuple) or not all(isinstance(p, str) and p for p in prefixes):
        raise s.fail(
            "declarations",
            f"parameters_outside_forward must be a tuple of parameter-name prefixes, got {prefixes!r}",
        )
    names = [name for name, _ in model.named_parameters()]
    unmatched = [p for p in prefixes if not any(name.startswith(p) for name in names)]
    if unmatched:
        raise s.fail(
            "declarations",
            f"parameters_outside_forward names prefixes that no parameter has: {unmatched}; parameters include "
            f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}",
        )


def _check_attention_declarations(s: Subject, model: VisionModel) -> None:
    if not isinstance(model.token_attention, bool):
        raise s.fail("declarations", f"token_attention must be a bool, got {model.token_attention!r}")
    trunk_name = model.class_attention_trunk
    if trunk_name is not None:
        if not isinstance(trunk_name, str):
            raise s.fail("declarations", f"class_attention_trunk must be a module name or None, got {trunk_name!r}")
        try:
            trunk = model.get_submodule(trunk_name)
        except AttributeError:
            raise s.fail(
                "declarations", f"class_attention_trunk={trunk_name!r} names no submodule of {type(model).__name__}"
            ) from None
        if not any(records_attention(m) for m in trunk.modules()):
            raise s.fail(
                "declarations",
                f"class_attention_trunk={trunk_name!r} holds no attention a Recorder can record "
                "(vit_core.layers.Attention layers or modules declaring records_attention = True)",
            )
    branches = model.attention_branches
    if isinstance(branches, bool) or not isinstance(branches, int) or branches < 1:
        raise s.fail("declarations", f"attention_branches must be a positive int, got {branches!r}")
    if branches > 1:
        try:
            layers = len(Recorder(model).attention_layers)
        except TypeError as exc:
            raise s.fail("declarations", f"attention_branches={branches}, but {describe(exc)}") from None
        if layers % branches:
            raise s.fail(
                "declarations",
                f"attention_branches={branches}, but a Recorder sees {layers} attention layers, not a multiple of it",
            )


def _check_head_reads_leading_tokens(s: Subject, model: VisionModel) -> None:
    try:
        leading = model.head_reads_leading_tokens()
    except Exception as exc:
        raise s.fail("declarations", f"head_reads_leading_tokens() raised {describe(exc)}") from exc
    if leading is None:
        return
    if isinstance(leading, bool) or not isinstance(leading, int) or leading < 1:
        raise s.fail("declarations", f"head_reads_leading_tokens() must be None or a positive int, got {leading!r}")
    with torch.no_grad():
        try:
            features = model.forward_features(s.example())
        except Exception as exc:
            raise s.fail("declarations", f"forward_features raised {describe(exc)}") from exc
        if not isinstance(features, Tensor) or features.ndim != 3 or features.shape[1] <= leading:
            raise s.fail(
                "declarations",
                f"head_reads_leading_tokens() = {leading}, but forward_features gave {shape_of(features)}, "
                f"not (batch, tokens, dim) with more than {leading} tokens",
            )
        changed = features.clone()
        changed[:, leading:] += torch.randn_like(changed[:, leading:])
        same = model.forward_head(features), model.forward_head(changed)
    if not torch.allclose(*same, atol=HEAD_TOLERANCE, rtol=0):
        raise s.fail(
            "declarations",
            f"head_reads_leading_tokens() = {leading}, but forward_head's output changes when a later token does: "
            "the head reads more tokens than declared (declare None, or how many it reads)",
        )
