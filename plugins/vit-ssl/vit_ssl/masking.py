"""Random patch masks shared by the masked-image-modelling trainers."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vit_ssl.randomness import RankedGenerator


def check_ratio(name: str, value: Any) -> float:
    """A masking ratio strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a float strictly between 0 and 1, got {value!r}")
    return float(value)


def count_masked(ratio: float, num_patches: int, name: str = "masking_ratio") -> int:
    """``int(ratio * num_patches)`` patches to mask; at least one must be masked and one kept."""
    masked = int(ratio * num_patches)
    if not 0 < masked < num_patches:
        raise ValueError(
            f"{name}={ratio} masks {masked} of {num_patches} patches; it must mask at least one and keep at least "
            "one (use larger images, smaller patches or another ratio)"
        )
    return masked


def shuffle_split(
    batch: int, num_patches: int, num_masked: int, generator: RankedGenerator, device: torch.device
) -> tuple[Tensor, Tensor]:
    """A uniformly random permutation of the patches of each image, split into ``(masked_ids, keep_ids)``
    of shapes ``(batch, num_masked)`` and ``(batch, num_patches - num_masked)``."""
    order = generator.rand((batch, num_patches), device).argsort(dim=-1)
    return order[:, :num_masked], order[:, num_masked:]


def check_ids(name: str, ids: Tensor, batch: int, num_patches: int) -> Tensor:
    """Patch indices ``(batch, k)``, distinct in each row, in ``[0, num_patches)``."""
    if not isinstance(ids, Tensor) or ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer tensor of patch indices, got {ids!r:.80}")
    if ids.ndim != 2 or ids.shape[0] != batch or not 0 < ids.shape[1] < num_patches:
        raise ValueError(
            f"{name} must be (batch={batch}, k) with 0 < k < {num_patches} patches, got shape {tuple(ids.shape)}"
        )
    if ids.min() < 0 or ids.max() >= num_patches:
        raise ValueError(f"{name} must index patches in [0, {num_patches}), got values in [{ids.min()}, {ids.max()}]")
    if (ids.sort(dim=1).values.diff(dim=1) == 0).any():
        raise ValueError(f"{name} must not repeat a patch within an image")
    return ids.long()


def sample_ids(name: str, ids: Tensor | None, ratio: float, tokens: Tensor, generator: RankedGenerator) -> Tensor:
    """The patch indices a trainer's ``name`` argument holds for ``tokens`` ``(batch, patches, dim)``:
    ``ids`` checked and on the tokens' device when given, else a fresh random draw per image, the
    ``ratio`` share of the patches for ``"masked_ids"`` or the rest for ``"keep_ids"``."""
    batch, num_patches = tokens.shape[:2]
    if ids is not None:
        return check_ids(name, ids, batch, num_patches).to(tokens.device)
    masked, kept = shuffle_split(batch, num_patches, count_masked(ratio, num_patches), generator, tokens.device)
    return {"masked_ids": masked, "keep_ids": kept}[name]


def ids_to_mask(ids: Tensor, num_patches: int) -> Tensor:
    """Boolean ``(batch, num_patches)``, ``True`` at ``ids``."""
    mask = torch.zeros(ids.shape[0], num_patches, dtype=torch.bool, device=ids.device)
    return mask.scatter_(1, ids, True)
