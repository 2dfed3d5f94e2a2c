"""EsViT: "Efficient Self-supervised Vision Transformers for Representation Learning" (Li et al.,
arXiv 2106.09785).

DINO (:class:`vit_ssl.Dino`) plus a region-level task, made for multi-stage backbones (Swin,
CvT) whose last stage is a feature map: each region (position) of a student view is matched to
the teacher region of the other view whose feature is most similar (cosine), and learns that
region's centred, sharpened distribution through its own region head and centre.  The loss is the
mean of the view-level and the region-level losses.

``hidden_layer`` names the layer giving the un-pooled features: a feature map
``(batch, channels, height, width)`` (``"layers"`` of a CvT) or tokens ``(batch, tokens, dim)``
(a ViT's patch tokens; ``None`` reads them from ``forward_features``).

vit-pytorch matches regions by the raw dot product of the features; the paper (and we) by cosine
similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vit_ssl.dino import Dino, Projections, cross_entropy, student_log_probs, teacher_targets


def match_regions(targets: Tensor, teacher_features: Tensor, student_features: Tensor) -> Tensor:
    """For each student region, the target of the teacher region most similar to it (cosine):
    ``targets`` ``(batch, teacher regions, K)``, ``*_features`` ``(batch, regions, dim)`` ->
    ``(batch, student regions, K)``."""
    student = F.normalize(student_features.float(), dim=-1)
    best = (student @ F.normalize(teacher_features.float(), dim=-1).transpose(1, 2)).argmax(dim=-1)
    return targets.gather(1, best.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))


def region_loss(
    targets: Tensor, student_logits: Tensor, teacher_features: Tensor, student_features: Tensor, student_temp: float
) -> Tensor:
    """Each student region learns the target distribution of its most similar teacher region.

    ``targets``: the teacher's region distributions ``(batch, teacher regions, K)``;
    ``student_logits``: ``(batch, student regions, K)``; ``*_features``: ``(batch, regions, dim)``."""
    return cross_entropy(match_regions(targets, teacher_features, student_features), student_logits, student_temp)


class EsViTTrainer(Dino):
    """EsViT pre-training of ``net`` (arguments as :class:`vit_ssl.Dino`)."""

    uses_regions = True

    def pair_losses(
        self, teacher: Projections, students: list[Projections], batch: int, st: float, tt: float
    ) -> Tensor:
        view_loss = super().pair_losses(teacher, students, batch, st, tt)
        targets = teacher_targets(teacher.regions, self.region_centering.center, tt).split(batch)
        teacher_features = teacher.embedding.regions.split(batch)
        views = [
            (log_probs, features)
            for s in students
            for log_probs, features in zip(
                student_log_probs(s.regions, st).split(batch), s.embedding.regions.split(batch)
            )
        ]
        losses = [
            -(match_regions(target, t_features, features) * log_probs).sum(dim=-1).mean()
            for i, (target, t_features) in enumerate(zip(targets, teacher_features))
            for j, (log_probs, features) in enumerate(views)
            if j != i
        ]
        return (view_loss + torch.stack(losses).mean()) / 2
