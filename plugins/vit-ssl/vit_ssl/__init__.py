"""vit-ssl: self-supervised and distillation trainers for vit-core encoders.

MAE, SimMIM, MPP, MP3, DINO, EsViT and DeiT distillation, written against vit-core's encoder
protocol (``vit_core.models.ENCODER_PROTOCOL``), plus a k-NN / linear-probe evaluation that is
correct under ``DistributedDataParallel``.

Exports load lazily, so loading the plugin's entry point (which imports this package) does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vit_core import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "MAE": "vit_ssl.mae",
    "SimMIM": "vit_ssl.simmim",
    "MPP": "vit_ssl.mpp",
    "MP3": "vit_ssl.mp3",
    "Dino": "vit_ssl.dino",
    "EsViTTrainer": "vit_ssl.esvit",
    "DistillableViT": "vit_ssl.distill",
    "DistillWrapper": "vit_ssl.distill",
    "EMATeacher": "vit_ssl.ema",
    "MultiCrop": "vit_ssl.augment",
    "Photometric": "vit_ssl.augment",
    "extract_features": "vit_ssl.evaluation",
    "knn_accuracy": "vit_ssl.evaluation",
    "linear_probe_accuracy": "vit_ssl.evaluation",
    "evaluate_features": "vit_ssl.evaluation",
}

__all__ = [
    "MAE",
    "MP3",
    "MPP",
    "Dino",
    "DistillWrapper",
    "DistillableViT",
    "EMATeacher",
    "EsViTTrainer",
    "MultiCrop",
    "Photometric",
    "SimMIM",
    "evaluate_features",
    "extract_features",
    "knn_accuracy",
    "linear_probe_accuracy",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vit_ssl.augment import MultiCrop, Photometric
    from vit_ssl.dino import Dino
    from vit_ssl.distill import DistillableViT, DistillWrapper
    from vit_ssl.ema import EMATeacher
    from vit_ssl.esvit import EsViTTrainer
    from vit_ssl.evaluation import evaluate_features, extract_features, knn_accuracy, linear_probe_accuracy
    from vit_ssl.mae import MAE
    from vit_ssl.mp3 import MP3
    from vit_ssl.mpp import MPP
    from vit_ssl.simmim import SimMIM
