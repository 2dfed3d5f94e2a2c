"""Running a model at another input size: timm's ``dynamic_img_size`` and ``set_input_size`` meaning.

Learned positions on a 2-D patch grid are resampled from that grid (in float32, each axis on its
own: :func:`vit_core.layers.positional.resample_grid`), on every call whose grid differs with
``dynamic_img_size=True``, or once and for good with ``set_input_size``.  Every model that offers
either goes through these helpers, so the argument checks, the error for positions that cannot
be resampled (fixed tables, 3-D video grids) and what ``save_model`` records are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vit_core.layers.positional import INTERPOLATIONS, LearnedPositionalEmbedding
from vit_core.validation import check_choice


def check_dynamic_img_size(value: object) -> bool:
    """``dynamic_img_size`` must be a bool (a truthy string or int is a mistake, not a yes)."""
    if not isinstance(value, bool):
        raise TypeError(f"dynamic_img_size must be a bool, got {value!r}")
    return value


def resizable_positions(model: nn.Module, positions: object) -> LearnedPositionalEmbedding:
    """``positions`` when they can be resampled (learned, on a 2-D grid); otherwise a ``ValueError`` saying
    why ``model`` cannot run at another input size."""
    if isinstance(positions, LearnedPositionalEmbedding) and len(positions.grid) == 2:
        return positions
    if isinstance(positions, LearnedPositionalEmbedding):
        why = f"its learned positions are on a {len(positions.grid)}-D grid {positions.grid}"
    else:
        why = f"its positions are {type(positions).__name__}, not a learned table"
    raise ValueError(
        f"{type(model).__name__} cannot change its input size (dynamic_img_size / set_input_size): {why}; "
        "only learned positions on a 2-D grid are resampled (docs/interop.md lists the models that can)"
    )


def enable_dynamic(model: nn.Module, positions: object, dynamic_img_size: object) -> bool:
    """Validate ``dynamic_img_size``; when true, make ``positions`` resample to every other grid."""
    if check_dynamic_img_size(dynamic_img_size):
        resizable_positions(model, positions).dynamic = True
    return dynamic_img_size


def resize_positions(
    model: nn.Module,
    positions: object,
    grid: Sequence[int],
    interpolation: str,
    *,
    size_name: str,
    size: Sequence[int],
) -> None:
    """Resample ``model``'s ``positions`` to ``grid`` for good (``interpolation`` also serves later dynamic
    resampling) and record the new input ``size`` under ``size_name`` in ``model.init_config``."""
    table = resizable_positions(model, positions)
    table.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
    table.resize(grid)
    record_input_size(model, size_name, size)


def record_input_size(model: nn.Module, size_name: str, size: Sequence[int]) -> None:
    """Make ``model.init_config`` (what ``save_model`` writes) build the model at ``size``: the argument
    ``size_name`` it was built with is replaced (a model whose constructor has no such argument keeps its
    configuration, and loading the resized weights into it then fails naming the mis-shaped tensors)."""
    config = getattr(model, "init_config", None)
    if isinstance(config, dict) and size_name in config:
        config[size_name] = tuple(size)
