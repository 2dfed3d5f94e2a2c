"""Wrappers that look inside a model: attention maps (Recorder) and embeddings (Extractor)."""

from vit_core.tools.extractor import Extractor
from vit_core.tools.recorder import Recorder

__all__ = ["Extractor", "Recorder"]
