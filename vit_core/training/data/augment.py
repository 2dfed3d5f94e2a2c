"""Training augmentation: the ``--augment`` presets and the settings each flag may override.

* ``none``: the evaluation transform (resize and centre crop) and nothing else;
* ``basic``: random resized crop and horizontal flip (the default for image folders and shards);
* ``deit``: DeiT's recipe (arXiv:2012.12877): random resized crop, flip, RandAugment m9 with magnitude noise 0.5,
  Mixup 0.8 / CutMix 1.0 switched per batch, random erasing 0.25, label smoothing 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

PRESETS = ("none", "basic", "deit")


@dataclass(frozen=True)
class Augmentation:
    """What is done to training images; the per-image part runs in loader workers, the rest on batches."""

    random_crop: bool = False
    hflip: float = 0.0
    rand_augment: float | None = None
    """RandAugment magnitude (0-10), ``None`` for none."""
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_switch: float = 0.5
    erase: float = 0.0
    label_smoothing: float = 0.0

    @classmethod
    def preset(cls, name: str) -> Augmentation:
        if name == "none":
            return cls()
        if name == "basic":
            return cls(random_crop=True, hflip=0.5)
        if name == "deit":
            return cls(
                random_crop=True, hflip=0.5, rand_augment=9.0, mixup=0.8, cutmix=1.0, erase=0.25, label_smoothing=0.1
            )
        raise ValueError(f"--augment must be one of {', '.join(PRESETS)}, got {name!r}")

    def override(self, **values: Any) -> Augmentation:
        """This augmentation with the given fields changed (``None`` values ignored), each checked."""
        changed = replace(self, **{k: v for k, v in values.items() if v is not None})
        changed.check()
        return changed

    def check(self) -> None:
        probabilities = {"hflip": "--hflip", "erase": "--reprob", "mix_switch": "--mix-switch"}
        for name, flag in probabilities.items():
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{flag} must be a probability in [0, 1], got {value}")
        for name, flag in {"mixup": "--mixup", "cutmix": "--cutmix"}.items():
            if getattr(self, name) < 0:
                raise ValueError(f"{flag} (a Beta distribution's alpha) must be >= 0, got {getattr(self, name)}")
        if self.rand_augment is not None and not 0.0 <= self.rand_augment <= 10.0:
            raise ValueError(f"--rand-augment (a magnitude) must be in [0, 10], got {self.rand_augment}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
