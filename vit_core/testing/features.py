"""The checks of what a model offers backbones and trainers: ``intermediates`` (``forward_intermediates``
and ``feature_info``) and ``encoder-protocol`` (the steps trainers compose)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vit_core.testing.subject import Subject, build, describe, shape_of


def _features_tensor(value: Any) -> Any:
    """The tensor of a features value (``NaViT``'s packed features carry theirs in ``tokens``)."""
    return getattr(value, "tokens", value)


def _same_features(a: Any, b: Any) -> bool:
    """Equal features: tensors (or packed features) within 1e-5, or tuples / lists of them (multi-branch models);
    a tensor ``a`` matches a tuple ``b`` when it equals one of its streams (an intermediate of one stream)."""
    a, b = _features_tensor(a), _features_tensor(b)
    if isinstance(a, Tensor) and isinstance(b, (tuple, list)):
        return any(_same_features(a, stream) for stream in b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_features(x, y) for x, y in zip(a, b))
    return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def _reduction(value: Any) -> tuple[int, ...] | None:
    """A ``feature_info`` reduction as a tuple (one per branch; a plain int is one branch), or None if invalid."""
    values = value if isinstance(value, tuple) and value else (value,)
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return values
    return None


def check_intermediates(s: Subject) -> None:
    """``feature_info`` describes each intermediate of ``forward_intermediates``, whose final features (and
    last intermediate with ``norm=True``) equal ``forward_features(x)``."""
    model = build(s, "intermediates").eval()
    x = s.example()
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not info or not all(isinstance(i, dict) for i in info):
        raise s.fail("intermediates", f"feature_info must be a non-empty list of dicts, got {info!r:.80}")
    missing = [i for i, entry in enumerate(info) if not {"module", "num_chs", "reduction"} <= set(entry)]
    if missing:
        raise s.fail("intermediates", f"feature_info entries {missing} lack module/num_chs/reduction")
    reductions = [_reduction(entry["reduction"]) for entry in info]
    bad = [(i, entry["reduction"]) for i, (entry, r) in enumerate(zip(info, reductions)) if r is None]
    if bad:
        raise s.fail(
            "intermediates",
            f"feature_info reductions must be positive ints (input side / map side), or a tuple of them, one "
            f"per branch of a multi-branch model: {bad}",
        )
    shrinking = [i for i in range(1, len(info)) if any(a < b for a, b in zip(reductions[i], reductions[i - 1]))]
    if shrinking:
        raise s.fail(
            "intermediates",
            f"feature_info reductions must not decrease from stage to stage; entries {shrinking} do: "
            f"{[entry['reduction'] for entry in info]}",
        )
    with torch.no_grad():
        try:
            features = model.forward_features(x)
            final, hidden = model.forward_intermediates(x, norm=True)
            only = model.forward_intermediates(x, indices=1, intermediates_only=True)
        except Exception as exc:
            raise s.fail("intermediates", f"forward_intermediates raised {describe(exc)}") from exc
    if len(hidden) != len(info):
        raise s.fail(
            "intermediates",
            f"forward_intermediates gave {len(hidden)} intermediates, feature_info describes {len(info)}",
        )
    for what, value in (("the returned final features", final), ("the last intermediate (norm=True)", hidden[-1])):
        if not _same_features(value, features):
            shapes = f"{shape_of(_features_tensor(value))} vs {shape_of(features)}"
            raise s.fail("intermediates", f"{what} differ from forward_features(x) ({shapes})")
    if not isinstance(only, list) or len(only) != 1:
        raise s.fail("intermediates", f"forward_intermediates(indices=1, intermediates_only=True) gave {only!r:.60}")
    for entry, h in zip(info, hidden):
        h = _features_tensor(h)
        if not isinstance(h, Tensor):
            continue  # multi-branch intermediates: feature_info describes each branch's width its own way
        channels = h.shape[1] if h.ndim == 4 else h.shape[-1]
        if channels != entry["num_chs"]:
            raise s.fail(
                "intermediates", f"{entry['module']}: feature_info says {entry['num_chs']} channels, got {channels}"
            )


def check_encoder_protocol(s: Subject) -> None:
    """For models that implement the encoder protocol: its steps compose to ``forward_features``."""
    from vit_core.models.patch_model import ENCODER_PROTOCOL

    model = build(s, "encoder-protocol").eval()
    if not all(hasattr(model, name) for name in ENCODER_PROTOCOL):
        return
    x = s.example()
    with torch.no_grad():
        try:
            tokens, grid = model.tokenize(x)
            embedded = model.prepend_prefix(model.add_positions(tokens, grid))
            encoded = model.encode(embedded, **getattr(model, "trunk_kwargs", lambda g: {})(grid))
            features = model.forward_features(x)
        except Exception as exc:
            raise s.fail(
                "encoder-protocol", f"tokenize/add_positions/prepend_prefix/encode raised {describe(exc)}"
            ) from exc
    if embedded.shape[1] != tokens.shape[1] + model.num_prefix_tokens:
        raise s.fail(
            "encoder-protocol",
            f"prepend_prefix added {embedded.shape[1] - tokens.shape[1]} tokens, num_prefix_tokens says "
            f"{model.num_prefix_tokens}",
        )
    if encoded.shape != features.shape or not torch.allclose(encoded, features, atol=1e-5):
        raise s.fail(
            "encoder-protocol", "encode(prepend_prefix(add_positions(*tokenize(x)))) differs from forward_features(x)"
        )
