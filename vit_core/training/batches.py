"""How a batch reaches the model in ``vit train``: the inputs as the model takes them (image lists for NaViT),
the training batch after the data's batch steps, the loss of one micro-batch, and the held-out evaluation
(under the run's autocast and memory layout)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.training.build import Built
from vit_core.training.data.pipeline import Data
from vit_core.training.layout import batch_layout
from vit_core.training.precision import Precision


def model_inputs(built: Built, x: Tensor) -> Any:
    """A batch as the model takes it: a list of images for image-list models (NaViT), else the tensor."""
    return list(x) if built.input_kind == "image-list" else x


def training_batch(
    built: Built, data: Data, x: Tensor, y: Tensor, generator: torch.Generator, *, channels_last: bool = False
) -> tuple[Tensor, Tensor]:
    """One uint8 batch made ready for the step: a classifier's inputs and (soft) targets after the batch steps
    (mixing and erasing over the whole per-rank batch, before it is cut into micro-batches), or a trainer's
    normalised images and labels; ``channels_last``: the inputs in that memory order."""
    inputs, targets = data.steps.training(x, y, generator) if built.classifier else (data.steps.inputs(x), y)
    return batch_layout(inputs, channels_last), targets


def loss_function(built: Built, model: nn.Module, data: Data) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss of one micro-batch: a classifier's (soft-target) cross-entropy, or the trainer's own loss."""
    if built.classifier:
        return lambda x, targets: data.steps.loss(model(model_inputs(built, x)), targets)
    if built.info.takes_labels:
        return lambda x, y: model(model_inputs(built, x), y)
    return lambda x, y: model(model_inputs(built, x))


@torch.no_grad()
def evaluate(
    built: Built,
    data: Data,
    device: torch.device,
    batch_size: int,
    module: nn.Module | None = None,
    *,
    channels_last: bool = False,
    precision: Precision | None = None,
) -> tuple[float, float | None, list]:
    """Held-out mean loss, accuracy for a classifier, and the files skipped, of ``module`` (default: the built
    one; the EMA's is evaluated alike), in eval mode and put back; ``channels_last``: batches in that order;
    ``precision``: the forward pass under the run's autocast, as in training (the loss in float32)."""
    module = module if module is not None else built.module
    was_training = module.training
    module.eval()
    total, correct, count, skipped = 0.0, 0, 0, []
    for images, labels, bad in data.val_batches(batch_size, pin_memory=device.type == "cuda"):
        skipped += data.unreadable(bad)
        if not len(labels):
            continue
        x = batch_layout(data.steps.inputs(images.to(device, non_blocking=True)), channels_last)
        y = labels.to(device, non_blocking=True)
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            if built.classifier:
                logits = module(model_inputs(built, x)).float()
                loss = torch.nn.functional.cross_entropy(logits, y)
                correct += int((logits.argmax(-1) == y).sum())
            else:
                loss = module(model_inputs(built, x), y) if built.info.takes_labels else module(model_inputs(built, x))
        total += float(loss) * len(y)
        count += len(y)
    module.train(was_training)
    return total / max(1, count), (correct / max(1, count)) if built.classifier else None, skipped
