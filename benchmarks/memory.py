"""Peak memory increase of a call: moved to :mod:`vit_core.runtime.timing` (``vit bench`` uses it too);
re-exported here."""

from vit_core.runtime.timing import peak_increase

__all__ = ["peak_increase"]
