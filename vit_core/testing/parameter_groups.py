"""The ``parameter-groups`` check: what a model declares for its optimizer on
:class:`~vit_core.models.base.VisionModel` holds.  ``no_weight_decay()`` names parameters the model has (a
misspelt name would silently decay a position table), and ``block_order()``, when declared, names parameters
the model has and at least one block (``vit train --layer-decay`` reads it)."""

from __future__ import annotations

from vit_core.models.base import BlockOrder, VisionModel, names_match
from vit_core.testing.subject import Subject, build, describe


def check_parameter_groups(s: Subject) -> None:
    """``no_weight_decay()`` is a set of the model's parameter names; ``block_order()`` is None or a
    :class:`~vit_core.models.base.BlockOrder` whose every name names a parameter.  A model that is not a
    ``VisionModel`` declares nothing and passes."""
    model = build(s, "parameter-groups")
    if not isinstance(model, VisionModel):
        return
    names = [name for name, _ in model.named_parameters()]
    try:
        declared = model.no_weight_decay()
        order = model.block_order()
    except Exception as exc:
        raise s.fail("parameter-groups", f"no_weight_decay() or block_order() raised {describe(exc)}") from exc
    if not isinstance(declared, (set, frozenset)) or not all(isinstance(n, str) for n in declared):
        raise s.fail("parameter-groups", f"no_weight_decay() must return a set of parameter names, got {declared!r}")
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise s.fail(
            "parameter-groups", f"no_weight_decay() names {unknown[:5]}, which are not parameters of the model"
        )
    if order is None:
        return
    if not isinstance(order, BlockOrder) or not order.blocks:
        raise s.fail("parameter-groups", f"block_order() must return None or a BlockOrder with blocks, got {order!r}")
    empty = [p for group in (order.stem, *order.blocks) for p in group if not any(names_match(n, p) for n in names)]
    if empty:
        raise s.fail("parameter-groups", f"block_order() names {empty[:5]}, which name no parameter of the model")
