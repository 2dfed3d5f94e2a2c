"""DINO: "Emerging Properties in Self-Supervised Vision Transformers" (Caron et al., arXiv 2104.14294).

Self-distillation without labels: a student and an exponential-moving-average teacher (same
backbone and projection head) see different crops of each image.  The teacher sees the two global
crops; the student sees those and ``num_local_crops`` small ones.  For each global crop, the
teacher's output, centred (a running mean of teacher outputs is subtracted, which keeps one
dimension from dominating) and sharpened by a low temperature, is the target distribution for the
student's output on every *other* crop; the loss is the mean cross-entropy over those pairs.

Training loop (the README's)::

    loss = learner(images)
    opt.zero_grad(); loss.backward(); opt.step()
    learner.update_moving_average()   # after the step: teacher weights and centre move

Under ``DistributedDataParallel`` call ``ddp.module.update_moving_average()`` on every process:
the centre's batch statistics are summed over the processes there (one all-reduce), so every
rank holds the centre of the global batch.

Defaults follow the paper where vit-pytorch's differ: student temperature 0.1 (vit-pytorch: 0.9),
teacher momentum 0.996 (0.9), global crops from 40% of the image (50%), a bottlenecked,
weight-normalised head; and the student also learns from the global crops (vit-pytorch's student
sees only its two local crops, the teacher only the two global ones).  The README example passes
its own values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.validation import as_tuple, check_positive_int
from vit_ssl.augment import MultiCrop
from vit_ssl.distributed import all_reduce_sum_
from vit_ssl.ema import EMATeacher, check_decay
from vit_ssl.embedding import Embedding, HiddenLayer, probe
from vit_ssl.heads import ProjectionHead
from vit_ssl.protocol import drop_classifier

Augment = Callable[[Tensor], Tensor]


def check_temperature(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive float, got {value!r}")
    return float(value)


def check_crop_bound(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a float in (0, 1], got {value!r}")
    return float(value)


class Centering(nn.Module):
    """The teacher centre ``c <- m c + (1 - m) mean(teacher outputs)`` (DINO eq. 4).

    :meth:`accumulate` adds a batch's teacher outputs during ``forward``; :meth:`update` (after
    the optimizer step) sums those statistics over every process and moves the centre.  The
    pending sums are plain attributes, not buffers, so DDP's buffer broadcast never overwrites a
    rank's own statistics; gradient accumulation (several forwards per step) is averaged.
    """

    def __init__(self, dim: int, momentum: float) -> None:
        super().__init__()
        self.momentum = check_decay("center_moving_average_decay", momentum)
        self.register_buffer("center", torch.zeros(1, dim))
        self._sum: Tensor | None = None
        self._count = 0

    @torch.no_grad()
    def accumulate(self, logits: Tensor) -> None:
        """``logits`` ``(..., dim)``: every row counts once."""
        rows = logits.detach().reshape(-1, logits.shape[-1]).float()
        total = rows.sum(dim=0)
        self._sum = total if self._sum is None else self._sum + total
        self._count += rows.shape[0]

    @torch.no_grad()
    def update(self) -> None:
        if self._sum is None:
            return
        count = self._sum.new_full((1,), float(self._count))  # filled on the device: no host tensor
        total, count = all_reduce_sum_([self._sum, count])
        mean = (total / count).to(self.center.dtype)
        self.center.mul_(self.momentum).add_(mean.view_as(self.center), alpha=1 - self.momentum)
        self._sum, self._count = None, 0


def teacher_targets(logits: Tensor, center: Tensor, temperature: float) -> Tensor:
    """The teacher's centred, sharpened distribution ``softmax((t - c) / temperature)`` (float32)."""
    return F.softmax((logits.float() - center.float()) / temperature, dim=-1)


def student_log_probs(logits: Tensor, temperature: float) -> Tensor:
    """``log softmax(logits / temperature)`` (float32)."""
    return F.log_softmax(logits.float() / temperature, dim=-1)


def cross_entropy(targets: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """``-sum p_t log p_s`` over the last axis, averaged over the others."""
    return -(targets * student_log_probs(student_logits, temperature)).sum(dim=-1).mean()


@dataclass
class Projections:
    """A branch's output: view logits ``(batch, K)``, region logits ``(batch, regions, K)`` (EsViT)
    and the backbone embedding they came from."""

    view: Tensor
    regions: Tensor | None
    embedding: Embedding


class Branch(nn.Module):
    """Backbone embedding -> projection head (and a region head for EsViT); the student, and the
    teacher's copy of it."""

    def __init__(self, reader: HiddenLayer, head: ProjectionHead, region_head: ProjectionHead | None = None) -> None:
        super().__init__()
        self.reader, self.head, self.region_head = reader, head, region_head

    def forward(self, x: Tensor) -> Projections:
        embedding = self.reader(x)
        regions = None
        if self.region_head is not None:
            regions = self.region_head(embedding.regions)
        return Projections(self.head(embedding.vector), regions, embedding)


class Dino(nn.Module):
    """DINO self-distillation of ``net``; ``forward(images)`` returns the loss.

    Args:
        net: the backbone (any vit-core model; any module with ``hidden_layer``).
        image_size: side (or ``(height, width)``) of the global crops.
        hidden_layer: where the embedding is read (see :mod:`vit_ssl.embedding`): ``None`` for the
            model's pooled features (its classifier, never run, is then removed:
            :func:`vit_ssl.protocol.drop_classifier`), a dotted module name, or a block index of
            ``net.transformer.layers``.
        projection_hidden_size, projection_layers, num_classes_K: the head (:class:`ProjectionHead`).
        student_temp, teacher_temp: softmax temperatures (teacher: the paper warms it from 0.04 to
            0.07 over 30 epochs; pass ``teacher_temp=`` to ``forward`` to schedule it).
        local_upper_crop_scale, global_lower_crop_scale: crop-area bounds (local: ``(0.05, upper)``,
            global: ``(lower, 1)``).
        moving_average_decay: teacher momentum (the base value when ``total_steps`` is given).
        center_moving_average_decay: centre momentum.
        augment_fn, augment_fn2: colour pipelines of the first and second global crop (the first
            also serves the local crops); ``None`` uses DINO's.
        num_local_crops, local_image_size: the local crops (DINO: 6-10 crops of 96 against 224).
        bottleneck_dim: width before the prototypes.
        total_steps: schedule the teacher momentum from ``moving_average_decay`` to 1 over that many
            :meth:`update_moving_average` calls (cosine); ``None`` keeps it constant.
        channels: input channels (default: ``net.channels`` or 3).
    """

    uses_regions = False

    def __init__(
        self,
        net: nn.Module,
        image_size: int | tuple[int, int],
        hidden_layer: str | int | None = None,
        projection_hidden_size: int = 256,
        num_classes_K: int = 65336,
        projection_layers: int = 4,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        local_upper_crop_scale: float = 0.4,
        global_lower_crop_scale: float = 0.4,
        moving_average_decay: float = 0.996,
        center_moving_average_decay: float = 0.9,
        augment_fn: Augment | None = None,
        augment_fn2: Augment | None = None,
        *,
        num_local_crops: int = 2,
        local_image_size: int | tuple[int, int] | None = None,
        bottleneck_dim: int = 256,
        total_steps: int | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        self.student_temp = check_temperature("student_temp", student_temp)
        self.teacher_temp = check_temperature("teacher_temp", teacher_temp)
        local_upper = check_crop_bound("local_upper_crop_scale", local_upper_crop_scale)
        global_lower = check_crop_bound("global_lower_crop_scale", global_lower_crop_scale)
        if local_upper < 0.05:
            raise ValueError(
                f"local_upper_crop_scale must be at least 0.05 (the local crops' lower bound), got {local_upper}"
            )
        channels = check_positive_int("channels", channels if channels is not None else getattr(net, "channels", 3))
        image_size = as_tuple("image_size", image_size)
        self.multicrop = MultiCrop(
            image_size,
            global_scale=(global_lower, 1.0),
            local_scale=(0.05, local_upper),
            num_local_crops=num_local_crops,
            local_image_size=local_image_size,
            augment_global1=augment_fn,
            augment_global2=augment_fn2,
            augment_local=augment_fn,
            channels=channels,
        )
        if hidden_layer is None:  # the pooled features: the classifier never runs
            drop_classifier(net)
        reader = HiddenLayer(net, hidden_layer)
        sizes = [image_size] + ([self.multicrop.local_image_size] if num_local_crops else [])
        try:
            embedding = probe(reader, sizes, channels)
        except (ValueError, RuntimeError) as error:
            raise ValueError(
                f"{type(self).__name__}: the backbone rejects crops of {sorted(set(sizes))} "
                f"(image_size / local_image_size, {channels} channels): {error}"
            ) from error
        head_args = dict(hidden_dim=projection_hidden_size, num_layers=projection_layers, bottleneck_dim=bottleneck_dim)
        head = ProjectionHead(embedding.vector.shape[-1], num_classes_K, **head_args)
        region_head = None
        if self.uses_regions:
            if embedding.regions is None:
                raise ValueError(
                    f"{type(self).__name__} needs region features: hidden_layer={hidden_layer!r} gives "
                    f"{tuple(embedding.vector.shape)} vectors; pick a layer giving tokens or feature maps"
                )
            region_head = ProjectionHead(embedding.regions.shape[-1], num_classes_K, **head_args)
        self.student = Branch(reader, head, region_head)
        self.teacher = EMATeacher(self.student, moving_average_decay, total_steps=total_steps)
        self.centering = Centering(num_classes_K, center_moving_average_decay)
        self.region_centering = Centering(num_classes_K, center_moving_average_decay) if self.uses_regions else None

    @property
    def net(self) -> nn.Module:
        """The backbone being trained (the student's)."""
        return self.student.reader.net

    @property
    def teacher_net(self) -> nn.Module:
        """The teacher's copy of the backbone (DINO evaluates this one)."""
        return self.teacher.module.reader.net

    def forward(
        self,
        x: Tensor | None = None,
        return_embedding: bool = False,
        return_projection: bool = True,
        student_temp: float | None = None,
        teacher_temp: float | None = None,
        *,
        views: tuple[Sequence[Tensor], Sequence[Tensor]] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The loss of a batch of images ``x``, augmented by :attr:`multicrop`; or of views augmented
        elsewhere (e.g. in DataLoader workers): ``views=(global_views, local_views)``, see
        :meth:`loss_on_views`.  With ``return_embedding``: the student's ``(projection, embedding)``
        of ``x`` itself (``embedding`` alone without ``return_projection``)."""
        if (x is None) == (views is None):
            raise TypeError("pass either images x or views=(global_views, local_views), not both or neither")
        if return_embedding:
            if x is None:
                raise TypeError("return_embedding needs images x")
            out = self.student(x)
            return (out.view, out.embedding.vector) if return_projection else out.embedding.vector
        global_views, local_views = self.multicrop(x) if views is None else views
        return self.loss_on_views(global_views, local_views, student_temp=student_temp, teacher_temp=teacher_temp)

    def loss_on_views(
        self,
        global_views: Sequence[Tensor],
        local_views: Sequence[Tensor] = (),
        *,
        student_temp: float | None = None,
        teacher_temp: float | None = None,
    ) -> Tensor:
        """The loss on already augmented views: two global views (teacher and student) and any
        number of local ones (student), each ``(batch, channels, height, width)``."""
        if len(global_views) != 2:
            raise ValueError(f"global_views must hold 2 views, got {len(global_views)}")
        batch = global_views[0].shape[0]
        if any(v.shape[0] != batch for v in (*global_views, *local_views)):
            raise ValueError(f"every view must hold the same {batch} images, got {[v.shape[0] for v in global_views]}")
        st = check_temperature("student_temp", self.student_temp if student_temp is None else student_temp)
        tt = check_temperature("teacher_temp", self.teacher_temp if teacher_temp is None else teacher_temp)
        teacher = self.teacher(torch.cat(tuple(global_views)))
        students = [self.student(torch.cat(tuple(global_views)))]
        if local_views:
            students.append(self.student(torch.cat(tuple(local_views))))
        if self.training:
            self.centering.accumulate(teacher.view)
            if self.region_centering is not None:
                self.region_centering.accumulate(teacher.regions)
        return self.pair_losses(teacher, students, batch, st, tt)

    def pair_losses(
        self, teacher: Projections, students: list[Projections], batch: int, st: float, tt: float
    ) -> Tensor:
        """Mean over (teacher global view i, student view j != i) of the cross-entropy (each view's
        softmax computed once, however many pairs it is in)."""
        targets = teacher_targets(teacher.view, self.centering.center, tt).split(batch)
        log_probs = [p for s in students for p in student_log_probs(s.view, st).split(batch)]
        losses = [-(t * p).sum(dim=-1).mean() for i, t in enumerate(targets) for j, p in enumerate(log_probs) if j != i]
        return torch.stack(losses).mean()

    @torch.no_grad()
    def update_moving_average(self) -> None:
        """After the optimizer step: move the teacher towards the student and the centre(s) towards
        the teacher outputs seen since the last call (summed over every process)."""
        self.teacher.update(self.student)
        self.centering.update()
        if self.region_centering is not None:
            self.region_centering.update()

    def reset_moving_average(self) -> None:
        """Restart the teacher as a fresh copy of the student (the momentum schedule restarts too)."""
        old = self.teacher
        self.teacher = EMATeacher(self.student, old.decay, total_steps=old.total_steps, final_decay=old.final_decay)
