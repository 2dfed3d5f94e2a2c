"""Fair timing on a shared machine: moved to :mod:`vit_core.runtime.timing` (``vit bench`` uses it too);
re-exported here."""

from vit_core.runtime.timing import Ratio, Timing, interleaved

__all__ = ["Ratio", "Timing", "interleaved"]
