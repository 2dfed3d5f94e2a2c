"""The optimizer of ``vit train`` and its parameter groups.

Weight decay never applies to 1-D parameters (biases, norm gains, LayerScale) nor to what a model declares
in :meth:`~vit_core.models.base.VisionModel.no_weight_decay` (positions, class/register/memory/distillation
tokens), for every ``VisionModel`` inside the trained module (a trainer's encoder too).  ``--layer-decay RATE``
scales each parameter's learning rate by ``RATE ** (blocks + 1 - depth)`` along the model's
:meth:`~vit_core.models.base.VisionModel.block_order` (BEiT / MAE fine-tuning): the head keeps the full rate,
the last block ``RATE`` times it, the stem ``RATE ** (blocks + 1)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vit_core.models.base import VisionModel
from vit_core.training.config import TrainError

OPTIMIZERS = ("adamw", "sgd")
"""The ``--opt`` choices.  LAMB is not offered: torch has none, and the maintained implementations come with
packages (timm, which pins torchvision and through it another torch build) that vit-core does not depend on."""


def no_decay_names(module: nn.Module) -> set[str]:
    """The parameters of ``module`` trained without weight decay: every parameter of fewer than 2 dimensions
    and what each ``VisionModel`` inside it (``module`` itself included) declares."""
    names = {name for name, p in module.named_parameters() if p.ndim <= 1}
    for prefix, sub in module.named_modules():
        if isinstance(sub, VisionModel):
            names |= {f"{prefix}.{name}" if prefix else name for name in sub.no_weight_decay()}
    return names


def layer_scales(module: nn.Module, rate: float) -> dict[str, float]:
    """Each parameter's learning-rate scale under layer decay ``rate`` (see the module's docstring); a module
    that declares no block order is refused, naming what it lacks."""
    order = module.block_order() if isinstance(module, VisionModel) else None
    if order is None:
        what = type(module).__name__
        raise TrainError(
            f"--layer-decay {rate}: {what} declares no block order (VisionModel.block_order() returns None), so its "
            "layers have no depth to decay by; drop --layer-decay, or declare block_order() on the model"
        )
    top = len(order.blocks) + 1
    return {name: rate ** (top - order.depth_of(name)) for name, _ in module.named_parameters()}


def parameter_groups(module: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` in optimizer groups: one per (decayed or not, learning-rate scale),
    each with ``weight_decay``, ``lr_scale`` (the schedule's rate is multiplied by it) and ``names``; the order
    is fixed by the parameters' order, so a resumed run's optimizer state lines up."""
    skip = no_decay_names(module)
    scales = layer_scales(module, layer_decay) if layer_decay is not None else {}
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        decay = name not in skip
        key = (decay, scales.get(name, 1.0))
        group = groups.setdefault(
            key, {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": key[1]}
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def make_optimizer(name: str, groups: list[dict[str, Any]], lr: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``--opt``'s optimizer over ``groups`` (their ``names`` left out of the optimizer's own groups)."""
    if name not in OPTIMIZERS:
        lamb = " (LAMB: no maintained implementation vit-core can depend on; use adamw)" if name == "lamb" else ""
        raise TrainError(f"--opt must be one of {', '.join(OPTIMIZERS)}, got {name!r}{lamb}")
    plain = [{k: v for k, v in group.items() if k != "names"} for group in groups]
    if name == "sgd":
        return torch.optim.SGD(plain, lr=lr, momentum=momentum, nesterov=momentum > 0)
    return torch.optim.AdamW(plain, lr=lr)
