"""vit-hierarchical: multi-stage vision transformers for vit-core.

PiT, LeViT, CvT, Twins-SVT, RegionViT, CrossFormer, ScalableViT, SepViT, MaxViT, NesT and
MobileViT, all on one backbone interface (:class:`vit_hierarchical.stages.HierarchicalModel`):
per-stage feature maps through ``forward_intermediates``, ``feature_info``, ``num_classes=0``.
Exports load lazily, so loading the plugin's entry point does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vit_core import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "PiT": "vit_hierarchical.pit",
    "LeViT": "vit_hierarchical.levit",
    "CvT": "vit_hierarchical.cvt",
    "TwinsSVT": "vit_hierarchical.twins_svt",
    "RegionViT": "vit_hierarchical.regionvit",
    "CrossFormer": "vit_hierarchical.crossformer",
    "ScalableViT": "vit_hierarchical.scalable_vit",
    "SepViT": "vit_hierarchical.sep_vit",
    "MaxViT": "vit_hierarchical.max_vit",
    "NesT": "vit_hierarchical.nest",
    "MobileViT": "vit_hierarchical.mobile_vit",
    "HierarchicalModel": "vit_hierarchical.stages",
}

__all__ = [
    "CrossFormer",
    "CvT",
    "HierarchicalModel",
    "LeViT",
    "MaxViT",
    "MobileViT",
    "NesT",
    "PiT",
    "RegionViT",
    "ScalableViT",
    "SepViT",
    "TwinsSVT",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vit_hierarchical.crossformer import CrossFormer
    from vit_hierarchical.cvt import CvT
    from vit_hierarchical.levit import LeViT
    from vit_hierarchical.max_vit import MaxViT
    from vit_hierarchical.mobile_vit import MobileViT
    from vit_hierarchical.nest import NesT
    from vit_hierarchical.pit import PiT
    from vit_hierarchical.regionvit import RegionViT
    from vit_hierarchical.scalable_vit import ScalableViT
    from vit_hierarchical.sep_vit import SepViT
    from vit_hierarchical.stages import HierarchicalModel
    from vit_hierarchical.twins_svt import TwinsSVT
