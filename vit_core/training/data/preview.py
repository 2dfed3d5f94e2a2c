"""One training batch of each augmentation preset drawn side by side, so a person can see what the model is fed."""

from __future__ import annotations

from pathlib import Path

import torch

from vit_core.training.data.augment import PRESETS, Augmentation
from vit_core.training.data.pipeline import DataSettings, load


def preset_batches(
    source: str, size: int = 96, count: int = 8, seed: int = 0, presets: tuple[str, ...] = PRESETS
) -> dict[str, torch.Tensor]:
    """``{preset: (count, 3, size, size) images in [0, 1]}``: the same ``count`` images of ``source`` through each
    preset's worker transforms and batch steps (Mixup/CutMix and erasing included), de-normalised for display."""
    batches = {}
    for preset in presets:
        settings = DataSettings(source=source, workers=0, augment=Augmentation.preset(preset), val_fraction=0.5)
        data = load(settings, "image", (3, size, size), seed=seed)
        torch.manual_seed(seed)
        images, labels, _ = next(data.epoch_batches(0, 0, count, 0, 1))
        x, _ = data.steps.training(images, labels, torch.Generator().manual_seed(seed))
        mean = torch.tensor(data.steps.mean).view(1, -1, 1, 1)
        std = torch.tensor(data.steps.std).view(1, -1, 1, 1)
        batches[preset] = (x * std + mean).clamp(0, 1)
    return batches


def draw_presets(
    source: str, out: Path, size: int = 96, count: int = 8, seed: int = 0, label: str | None = None
) -> Path:
    """A PNG with one row per preset (``none``, ``basic``, ``deit``) of ``count`` images, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = preset_batches(source, size, count, seed)
    fig, axes = plt.subplots(len(batches), count, figsize=(1.3 * count, 1.45 * len(batches)), squeeze=False)
    for row, (preset, images) in enumerate(batches.items()):
        for col in range(count):
            ax = axes[row][col]
            ax.imshow(images[col].permute(1, 2, 0).numpy() if col < len(images) else torch.zeros(size, size, 3))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(preset, fontsize=11)
    fig.suptitle(f"one training batch per --augment preset ({label or source})", fontsize=10)
    fig.tight_layout()
    partial = out.with_name(out.name + ".partial.png")
    fig.savefig(partial, dpi=80)
    plt.close(fig)
    partial.replace(out)
    return out
