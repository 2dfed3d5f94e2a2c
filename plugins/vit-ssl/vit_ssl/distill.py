"""DeiT distillation: "Training data-efficient image transformers & distillation through attention"
(Touvron et al., arXiv 2012.12877).

What the paper adds to a ViT: a second learned token, the distillation token, next to the class
token; it goes through the transformer with the patches and its own head learns from a teacher
(soft: KL divergence to the teacher's temperature-softened distribution, times ``T**2``; hard:
cross-entropy to the teacher's arg-max), while the class head learns from the labels.

:class:`DistillableViT` is a :class:`vit_core.ViT` whose distillation token and head are its own
parameters, so ``student.to(device)`` moves them (vit-pytorch keeps them in the wrapper, where they
are left behind).  ``student(images)`` runs the plain ViT (no distillation token): exactly what
:meth:`DistillableViT.to_vit` gives back.  ``student(images, distill=True)`` inserts the token
right after the class token (position 1) and returns ``(class_logits, distill_logits)``: the head
then reads two leading tokens, so with ``pool="cls"`` the last block runs for those two alone
(the class-token-only pruning of ``ViT``, one token wider).  vit-pytorch appends the token at the
end; without a positional embedding on it, the outputs do not depend on where it sits.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core import ViT


class DistillableViT(ViT):
    """``vit_core.ViT`` (same arguments) with a distillation token and head."""

    parameters_outside_forward = ("distill_token", "distill_head.")
    """Used by ``forward(img, distill=True)`` only (the conformance kit's gradients check skips them)."""

    PREFIX_PARAMETERS = (*ViT.PREFIX_PARAMETERS, "distill_token")
    """ViT's prefix tokens and the distillation token (no weight decay; in the stem of the block order)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.num_classes == 0:
            raise ValueError(
                "DistillableViT needs num_classes > 0: the distillation head predicts the teacher's classes"
            )
        self.config = dict(kwargs)
        self.distill_token = nn.Parameter(torch.randn(1, self.num_features) * 0.02)
        self.distill_head = self.make_distill_head(layernorm=False)

    __init__.__signature__ = inspect.signature(ViT.__init__)  # ViT's arguments, for help() and the registry

    def make_distill_head(self, layernorm: bool) -> nn.Module:
        """The distillation head: ``Linear(dim, num_classes)``, after a LayerNorm with ``layernorm``."""
        linear = nn.Linear(self.num_features, self.num_classes)
        head = nn.Sequential(nn.LayerNorm(self.num_features), linear) if layernorm else linear
        return head.to(self.distill_token.device)

    def head_reads_leading_tokens(self) -> int | None:
        """``forward(img)`` reads what ViT's head reads (the class token with ``pool="cls"``);
        ``forward(img, distill=True)`` reads one more leading token, the distillation token."""
        return super().head_reads_leading_tokens()

    def forward(self, img: Tensor, *, distill: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if not distill:
            return super().forward(img)
        tokens = self.embed(img)
        slot = self.num_prefix_tokens
        distill_token = self.distill_token.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        tokens = torch.cat((tokens[:, :slot], distill_token, tokens[:, slot:]), dim=1)
        queries = self.pruned_queries()
        trunk_kwargs = {} if queries is None else {"queries": queries + 1}
        features = self.encode(tokens, **trunk_kwargs)
        distilled = features[:, slot]
        features = torch.cat((features[:, :slot], features[:, slot + 1 :]), dim=1)
        return self.forward_head(features), self.distill_head(distilled)

    def to_vit(self) -> ViT:
        """A plain ``vit_core.ViT`` with this model's weights (the distillation token and head dropped)."""
        config = dict(self.config)
        if config.get("transformer") is not None:
            config["transformer"] = copy.deepcopy(self.transformer)
        vit = ViT(**config).to(self.distill_token.device)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(("distill_token", "distill_head."))}
        vit.load_state_dict(state)
        vit.prune_last_block = self.prune_last_block
        return vit.train(self.training)


class DistillWrapper(nn.Module):
    """Distils ``teacher`` into ``student``: ``forward(images, labels)`` returns
    ``(1 - alpha) * CE(class_logits, labels) + alpha * distillation_loss``.

    Args:
        teacher: any module mapping images to ``(batch, num_classes)`` logits; frozen (no
            gradients, always in eval mode).
        student: a :class:`DistillableViT`.
        temperature: softening temperature of the soft distillation loss.
        alpha: weight of the distillation loss, in ``[0, 1]``.
        hard: hard distillation (cross-entropy to the teacher's arg-max) instead of soft (KL).
        mlp_layernorm: a LayerNorm before the student's distillation head (rebuilds that head).
    """

    def __init__(
        self,
        *,
        teacher: nn.Module,
        student: DistillableViT,
        temperature: float = 1.0,
        alpha: float = 0.5,
        hard: bool = False,
        mlp_layernorm: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(student, DistillableViT):
            raise TypeError(f"student must be a vit_ssl.DistillableViT, got {type(student).__name__}")
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
        self.temperature = _check_temperature(temperature)
        self.alpha = _check_alpha(alpha)
        self.hard = bool(hard)
        if mlp_layernorm:
            student.distill_head = student.make_distill_head(layernorm=True)
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> DistillWrapper:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(
        self, img: Tensor, labels: Tensor, temperature: float | None = None, alpha: float | None = None
    ) -> Tensor:
        alpha = self.alpha if alpha is None else _check_alpha(alpha)
        temperature = self.temperature if temperature is None else _check_temperature(temperature)
        num_classes = self.student.num_classes
        if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.shape != (img.shape[0],):
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must be integer class indices of shape ({img.shape[0]},), got {shape}")
        with torch.no_grad():
            teacher_logits = self.teacher(img)
        if teacher_logits.ndim != 2 or teacher_logits.shape[-1] != num_classes:
            raise ValueError(
                f"the teacher gives logits of shape {tuple(teacher_logits.shape)}; the student has "
                f"num_classes={num_classes}, so the teacher must give (batch, {num_classes})"
            )
        student_logits, distill_logits = self.student(img, distill=True)
        loss = F.cross_entropy(student_logits.float(), labels)
        return (1 - alpha) * loss + alpha * distillation_loss(distill_logits, teacher_logits, temperature, self.hard)


def distillation_loss(distill_logits: Tensor, teacher_logits: Tensor, temperature: float, hard: bool) -> Tensor:
    """Hard: ``CE(distill_logits, argmax teacher)``.  Soft: ``T**2 * KL(softmax(teacher / T) ||
    softmax(distill / T))``, averaged over the batch."""
    if hard:
        return F.cross_entropy(distill_logits.float(), teacher_logits.argmax(dim=-1))
    log_student = F.log_softmax(distill_logits.float() / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a float in [0, 1], got {alpha!r}")
    return float(alpha)


def _check_temperature(temperature: object) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive float, got {temperature!r}")
    return float(temperature)
