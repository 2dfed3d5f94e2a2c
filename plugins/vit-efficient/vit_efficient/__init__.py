"""vit-efficient: efficient-attention trunks by name (Nystromformer, x-transformers), ATSViT and
PatchMergerViT for vit-core.

Exports load lazily, so loading the plugin's entry point (which imports this package) does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vit_core import lazy_exports

__version__ = "0.1.0"

_MODULES = {
    "ats": ("ATSViT", "TokenSamplingAttention", "KeepSampledTokens"),
    "patch_merger": ("PatchMerger", "PatchMergerViT"),
    "backends": ("CheckedTrunk", "MissingBackendError", "nystromformer", "x_transformers_encoder"),
}
"""Each module of the package and the public names it defines."""
_EXPORTS = {name: f"vit_efficient.{module}" for module, names in _MODULES.items() for name in names}

__all__ = [
    "ATSViT",
    "CheckedTrunk",
    "KeepSampledTokens",
    "MissingBackendError",
    "PatchMerger",
    "PatchMergerViT",
    "TokenSamplingAttention",
    "nystromformer",
    "x_transformers_encoder",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vit_efficient.ats import ATSViT, KeepSampledTokens, TokenSamplingAttention
    from vit_efficient.backends import CheckedTrunk, MissingBackendError, nystromformer, x_transformers_encoder
    from vit_efficient.patch_merger import PatchMerger, PatchMergerViT
