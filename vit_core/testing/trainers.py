"""The checks of a trainer (``kind="trainer"``) beyond its metadata: ``loss`` and ``gradients``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_core.models.base import MovingAverageTrainer
from vit_core.testing.subject import GRADIENT_PASSES, Subject, describe, shape_of


def _assemble(s: Subject, check: str) -> tuple[nn.Module, dict[str, nn.Module]]:
    try:
        return s.create_with_parts()
    except Exception as exc:
        config = dict(s.info.default_config)
        raise s.fail(check, f"building {s.info.target} from {config} raised {describe(exc)}") from exc


def _loss(s: Subject, check: str, trainer: nn.Module, parts: dict[str, nn.Module]) -> Tensor:
    call = "trainer(images, labels)" if s.info.takes_labels else "trainer(images)"
    try:
        loss = trainer(*s.active_registry.example_args(s.info, parts, s.batch))
    except Exception as exc:
        raise s.fail(check, f"{call} on a batch of {s.batch} raised {describe(exc)}") from exc
    if not isinstance(loss, Tensor) or loss.ndim != 0 or not loss.is_floating_point():
        raise s.fail(check, f"{call} must return a scalar floating-point loss tensor, got {shape_of(loss)}")
    if not torch.isfinite(loss):
        raise s.fail(check, f"{call} returned a non-finite loss {loss.item()}")
    return loss


def check_loss(s: Subject) -> None:
    """Built from its default configuration, the trainer returns a finite scalar loss on a batch."""
    trainer, parts = _assemble(s, "loss")
    _loss(s, "loss", trainer.train(), parts)


def check_trainer_gradients(s: Subject) -> None:
    """The backward pass reaches every trained component (its patch embedding too) and every trainable
    parameter of the trainer's own; a trainer declaring ``update_moving_average`` then runs it."""
    trainer, parts = _assemble(s, "gradients")
    for _ in range(GRADIENT_PASSES):  # masks and drop-path draw anew each pass, as for models
        _loss(s, "gradients", trainer.train(), parts).backward()
    part_params = {id(p) for part in parts.values() for p in part.parameters()}
    for arg, component in s.info.components.items():
        part = parts.get(arg)
        if not component.trained or part is None:
            continue
        reached = {id(p) for p in part.parameters() if p.grad is not None and p.grad.any()}
        if not reached:
            raise s.fail(
                "gradients",
                f"the loss does not reach {arg}={component}: none of its parameters gets a gradient; "
                f"the trainer must train the model passed as {arg}=",
            )
        embed = getattr(part, "patch_embed", None)
        if isinstance(embed, nn.Module) and not any(id(p) in reached for p in embed.parameters()):
            raise s.fail(
                "gradients",
                f"the loss reaches {arg}={component} but not its patch embedding ({arg}.patch_embed): "
                "the gradient must flow through the whole encoder",
            )
    own = [(n, p) for n, p in trainer.named_parameters() if p.requires_grad and id(p) not in part_params]
    dead = [n for n, p in own if p.grad is None or not p.grad.any()]
    if dead:
        raise s.fail(
            "gradients",
            f"{len(dead)} of the trainer's own {len(own)} trainable parameters get no gradient: {', '.join(dead)}",
        )
    if isinstance(trainer, MovingAverageTrainer):
        try:
            trainer.update_moving_average()
        except Exception as exc:
            raise s.fail(
                "gradients",
                f"update_moving_average() after a backward pass raised {describe(exc)}; a training loop calls it "
                "after every optimiser step",
            ) from exc
