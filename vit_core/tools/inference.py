"""Using a trained classifier: top-k predictions for image files and accuracy figures on a labelled source.

Both read the preprocessing and the class names from the model's ``pretrained_cfg`` (what ``vit train`` records
in the checkpoint), so images are fed exactly as training evaluated them and classes are matched by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vit_core.training.data.pipeline import DataSettings, labelled
from vit_core.training.data.preprocess import create_transform


def load_classifier(path: str | Path) -> nn.Module:
    """The classifier saved in ``path`` (a ``vit train`` run folder stands for its best checkpoint), refused with
    the reason when it records no preprocessing (``pretrained_cfg``) or is no classifier."""
    from vit_core.interop.saving import load_model, model_folder

    model = load_model(path)
    if not getattr(model, "pretrained_cfg", None):
        raise ValueError(
            f"{model_folder(path)}: the checkpoint records no pretrained_cfg (preprocessing and class names); "
            "train it with this version of `vit train`, or set model.pretrained_cfg in Python"
        )
    if not isinstance(getattr(model, "num_classes", None), int) or model.num_classes < 1:
        raise ValueError(f"{model_folder(path)}: {type(model).__name__} has no classifier head")
    return model


def label_names(model: nn.Module) -> list[str]:
    """The model's class names (``pretrained_cfg['label_names']``), or the class indices as text."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("label_names")
    if names:
        return list(names)
    return [str(i) for i in range(int(getattr(model, "num_classes", 0) or 0))]


@torch.no_grad()
def predict(model: nn.Module, images: Sequence[str | Path], top_k: int = 5) -> list[dict[str, Any]]:
    """For each image file: ``{"image", "top": [{"label", "index", "probability"}, ...]}``, best first."""
    if top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {top_k}")
    preprocess = create_transform(model.pretrained_cfg)
    names = label_names(model)
    device = next(model.parameters()).device
    model.eval()
    results = []
    for image in images:
        probabilities = model(preprocess(image).unsqueeze(0).to(device)).softmax(-1)[0].float().cpu()
        values, indices = probabilities.topk(min(top_k, len(probabilities)))
        top = [
            {"label": names[i] if i < len(names) else str(i), "index": int(i), "probability": float(p)}
            for p, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        results.append({"image": str(image), "top": top})
    return results


@dataclass
class Evaluation:
    """Accuracy figures of a classifier on a labelled source."""

    samples: int
    loss: float
    top1: float
    top5: float
    classes: list[str]
    per_class: dict[str, float | None] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    """``confusion[true][predicted]`` counts."""
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "per_class": self.per_class,
            "classes": self.classes,
            "confusion": self.confusion,
            "skipped": self.skipped,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module, source: str, *, batch_size: int = 64, workers: int | None = None, skip_bad_images: bool = False
) -> Evaluation:
    """Top-1/top-5 accuracy, mean loss, per-class accuracy and the confusion matrix of ``model`` on ``source``
    (``folder:PATH``, its ``val/`` split in the ImageNet layout, or ``wds:PATTERN``), classes mapped by name onto
    the model's."""
    cfg = model.pretrained_cfg
    names = tuple(label_names(model))
    shape = tuple(cfg["input_size"])
    settings = DataSettings(
        source=source,
        workers=workers,
        skip_bad_images=skip_bad_images,
        interpolation=cfg["interpolation"],
        crop_pct=float(cfg["crop_pct"]),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )
    data = _labelled(settings, shape, names)
    device = next(model.parameters()).device
    model.eval()
    count, loss_sum, top1, top5 = 0, 0.0, 0, 0
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    skipped: list[str] = []
    for images, labels, bad in data.val_batches(batch_size):
        skipped += data.unreadable(bad)
        if not len(labels):
            continue
        logits = model(data.steps.inputs(images.to(device))).float().cpu()
        loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        best = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        top1 += int((best[:, 0] == labels).sum())
        top5 += int((best == labels[:, None]).any(-1).sum())
        confusion.index_put_((labels, best[:, 0]), torch.ones(len(labels), dtype=torch.long), accumulate=True)
        count += len(labels)
    if count == 0:
        raise ValueError(f"--data {source}: no image could be evaluated")
    per_class = {
        name: (int(confusion[i, i]) / int(confusion[i].sum())) if int(confusion[i].sum()) else None
        for i, name in enumerate(names)
    }
    return Evaluation(
        count, loss_sum / count, top1 / count, top5 / count, list(names), per_class, confusion.tolist(), skipped
    )


def _labelled(settings: DataSettings, shape: tuple[int, ...], names: tuple[str, ...]) -> Any:
    return labelled(settings, "video" if len(shape) == 4 else "image", shape, names)


def plot_confusion(evaluation: Evaluation, out: Path) -> Path:
    """The confusion matrix as a PNG (rows: true class, columns: predicted), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(evaluation.classes)
    fig, ax = plt.subplots(figsize=(2 + 0.5 * n, 1.5 + 0.5 * n))
    ax.imshow(evaluation.confusion, cmap="Blues")
    ax.set_xticks(range(n), evaluation.classes, rotation=90)
    ax.set_yticks(range(n), evaluation.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"top-1 {evaluation.top1:.3f} on {evaluation.samples} images")
    for i, row in enumerate(evaluation.confusion):
        for j, value in enumerate(row):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    partial = out.with_name(out.name + ".partial.png")
    fig.savefig(partial)
    plt.close(fig)
    partial.replace(out)
    return out
