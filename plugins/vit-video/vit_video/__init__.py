"""vit-video: video vision transformers (3D ViT, 3D SimpleViT, 3D CCT, ViViT) for vit-core.

Exports load lazily, so loading the plugin's entry point (which imports this package) does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vit_core import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ViT3D": "vit_video.vit_3d",
    "SimpleViT3D": "vit_video.simple_vit_3d",
    "CCT3D": "vit_video.cct_3d",
    "ViViT": "vit_video.vivit",
    "sincos_3d": "vit_video.positional",
}

__all__ = ["CCT3D", "SimpleViT3D", "ViT3D", "ViViT", "sincos_3d"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from vit_video.cct_3d import CCT3D
    from vit_video.positional import sincos_3d
    from vit_video.simple_vit_3d import SimpleViT3D
    from vit_video.vit_3d import ViT3D
    from vit_video.vivit import ViViT
