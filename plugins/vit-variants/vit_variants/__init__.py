"""vit-variants: single-scale ViT variants for vit-core.

DeepViT, CaiT, T2T-ViT, CCT (and its presets ``cct_2`` ... ``cct_16``), CrossViT, XCiT, Parallel
ViT, ViT for small datasets (with ``SPT``) and the learnable-memory ViT (with ``Adapter``).
Exports load lazily, so loading the plugin's entry point (which imports this package) does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vit_core import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "DeepViT": "vit_variants.deepvit",
    "CaiT": "vit_variants.cait",
    "T2TViT": "vit_variants.t2t",
    "CCT": "vit_variants.cct",
    "cct_2": "vit_variants.cct",
    "cct_4": "vit_variants.cct",
    "cct_6": "vit_variants.cct",
    "cct_7": "vit_variants.cct",
    "cct_8": "vit_variants.cct",
    "cct_14": "vit_variants.cct",
    "cct_16": "vit_variants.cct",
    "CrossViT": "vit_variants.cross_vit",
    "XCiT": "vit_variants.xcit",
    "ParallelViT": "vit_variants.parallel_vit",
    "SmallDatasetViT": "vit_variants.small_dataset",
    "SPT": "vit_variants.small_dataset",
    "LearnableMemoryViT": "vit_variants.learnable_memory",
    "Adapter": "vit_variants.learnable_memory",
}

__all__ = [
    "CCT",
    "SPT",
    "Adapter",
    "CaiT",
    "CrossViT",
    "DeepViT",
    "LearnableMemoryViT",
    "ParallelViT",
    "SmallDatasetViT",
    "T2TViT",
    "XCiT",
    "cct_2",
    "cct_4",
    "cct_6",
    "cct_7",
    "cct_8",
    "cct_14",
    "cct_16",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vit_variants.cait import CaiT
    from vit_variants.cct import CCT, cct_2, cct_4, cct_6, cct_7, cct_8, cct_14, cct_16
    from vit_variants.cross_vit import CrossViT
    from vit_variants.deepvit import DeepViT
    from vit_variants.learnable_memory import Adapter, LearnableMemoryViT
    from vit_variants.parallel_vit import ParallelViT
    from vit_variants.small_dataset import SPT, SmallDatasetViT
    from vit_variants.t2t import T2TViT
    from vit_variants.xcit import XCiT
