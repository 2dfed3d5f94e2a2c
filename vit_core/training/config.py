"""What ``vit train`` takes (:class:`TrainConfig`) and the error of a request that cannot run (:class:`TrainError`)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from vit_core.training.data.pipeline import DataSettings


class TrainError(ValueError):
    """A training request that cannot run: the message says what to change."""


@dataclass
class TrainConfig:
    """Everything ``vit train`` takes; ``overrides`` are ``--set`` pairs (``encoder.dim`` for a component)."""

    name: str
    encoder: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str | None = None  # None: digits, or on --resume the checkpoint's
    val_data: str | None = None
    val_fraction: float | None = None  # None: 0.1
    workers: int | None = None  # None: one per CPU less one (files), 0 (bundled data)
    augment: str | None = None  # None: basic for folders and shards, none for the bundled data
    hflip: float | None = None
    rand_augment: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    reprob: float | None = None
    skip_bad_images: bool | None = None
    interpolation: str | None = None  # None: bicubic
    crop_pct: float | None = None  # None: 0.875 for photos, 1.0 for the bundled data
    mean: tuple[float, ...] | None = None  # None: ImageNet's for RGB photos, 0.5 otherwise (or --init's model's)
    std: tuple[float, ...] | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    lr_base: float | None = None  # the rate of a global batch of 512: lr = lr_base * batch_size / 512
    min_lr: float = 0.0
    opt: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.05
    layer_decay: float | None = None
    warmup: float = 0.1
    warmup_epochs: float | None = None  # None: the fraction --warmup
    label_smoothing: float | None = None  # None: the --augment preset's
    clip: float = 1.0
    seed: int = 0
    max_steps: int | None = None
    precision: str = "fp32"
    accum_steps: int = 1
    ema: float | None = None
    ema_warmup: bool = True
    drop_path: float | None = None
    compile: bool = False
    channels_last: bool = False
    tf32: bool = True
    strategy: str = "ddp"
    init: str | None = None
    checkpoint_every: int | None = None
    out: Path | None = None
    resume: Path | None = None
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    log_every: int = 10
    given: frozenset[str] | None = None
    """The fields set on purpose (the command line's options); ``--resume`` restores the others from the run.
    ``None``: the fields whose values differ from the defaults."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = (
        "data", "val_data", "val_fraction", "augment", "hflip", "rand_augment", "mixup", "cutmix", "reprob",
        "label_smoothing", "skip_bad_images", "interpolation", "crop_pct", "mean", "std",
    )  # fmt: skip
    """The settings that make up a run's data: recorded in its checkpoint and restored by ``--resume``."""

    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        "epochs", "batch_size", "lr", "lr_base", "min_lr", "opt", "momentum", "weight_decay", "layer_decay",
        "warmup", "warmup_epochs", "clip", "seed", "max_steps", "precision", "accum_steps", "ema", "ema_warmup",
        "drop_path", "compile", "channels_last", "tf32", "strategy", "checkpoint_every", "log_every",
    )  # fmt: skip
    """The engine's settings: recorded in the checkpoint; ``--resume RUN`` alone continues with them to the
    run's planned end (an option given with ``--resume`` replaces the recorded value)."""

    def given_fields(self) -> frozenset[str]:
        """:attr:`given`, or the fields that differ from their defaults."""
        if self.given is not None:
            return self.given
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        return frozenset(name for name, default in defaults.items() if getattr(self, name) != default)

    def data_settings(self) -> DataSettings:
        """The data side of this configuration (``augment`` and its per-flag overrides applied)."""
        from vit_core.training.data.augment import Augmentation
        from vit_core.training.data.pipeline import DataSettings
        from vit_core.training.data.transforms import INTERPOLATIONS

        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            raise TrainError(f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise TrainError(f"--crop-pct must be in (0, 1] (the centre crop's share), got {self.crop_pct}")
        source = self.data or "digits"
        photos = source.startswith(("folder:", "wds:"))
        try:
            augment = Augmentation.preset(self.augment or ("basic" if photos else "none")).override(
                hflip=self.hflip,
                rand_augment=self.rand_augment,
                mixup=self.mixup,
                cutmix=self.cutmix,
                erase=self.reprob,
                label_smoothing=self.label_smoothing,
            )
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        return DataSettings(
            source=source,
            val_source=self.val_data,
            val_fraction=0.1 if self.val_fraction is None else self.val_fraction,
            workers=self.workers,
            augment=augment,
            skip_bad_images=bool(self.skip_bad_images),
            interpolation=self.interpolation or "bicubic",
            crop_pct=self.crop_pct,
            mean=tuple(self.mean) if self.mean is not None else None,
            std=tuple(self.std) if self.std is not None else None,
        )
