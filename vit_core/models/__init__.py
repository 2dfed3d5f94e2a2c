"""The core models: ViT, SimpleViT, NaViT, and the interface they share."""

from vit_core.models.base import VisionModel
from vit_core.models.navit import NaViT, PackedFeatures
from vit_core.models.patch_model import PatchTransformer
from vit_core.models.simple_vit import SimpleViT
from vit_core.models.vit import ViT

__all__ = ["NaViT", "PackedFeatures", "PatchTransformer", "SimpleViT", "ViT", "VisionModel"]
