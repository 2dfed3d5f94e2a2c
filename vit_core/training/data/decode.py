"""Reading one image file as a user's photo collection holds it: any common suffix, EXIF orientation, any mode.

Pillow decodes; every image comes out as an 8-bit ``RGB`` or ``L`` image whatever it was stored as (grey,
palette, RGBA over white, CMYK, 16-bit grey scaled to 8 bits).  A file that cannot be decoded (truncated, not an
image, a decompression bomb) raises :class:`BadImageError` naming the file and the reason.
"""

from __future__ import annotations

import io
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
"""File suffixes read as images, compared case-insensitively (``.JPG`` is an image)."""

MODES = {1: "L", 3: "RGB"}
"""The Pillow mode decoded for a model's channel count."""


class BadImageError(ValueError):
    """A file that cannot be decoded as an image; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot read image {path!r}: {reason} (pass --skip-bad-images to skip such files)")

    def __reduce__(self) -> tuple:  # raised in DataLoader workers: rebuilt from its two fields in the main process
        return (BadImageError, (self.path, self.reason))


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is listed as an image: a known suffix, any case, and not hidden (``.DS_Store``, ``._x.jpg``)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def mode_for(channels: int) -> str:
    """The Pillow mode for ``channels`` (1: grey, 3: RGB); any other count is refused."""
    if channels not in MODES:
        raise ValueError(f"image data has 1 (grey) or 3 (RGB) channels; the model takes channels={channels}")
    return MODES[channels]


def _to_8bit(image):
    """16- and 32-bit grey (``I;16``, ``I``, ``F``) scaled to 8 bits by the type's range (not clipped at 255)."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image)
    if image.mode == "F":
        array = np.clip(array, 0.0, 1.0) * 255.0 if array.max() <= 1.0 else np.clip(array, 0.0, 255.0)
    else:
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = array.astype(np.float64) * (255.0 / top)
    return Image.fromarray(np.rint(array).astype(np.uint8), mode="L")


def convert(image, mode: str):
    """``image`` (any Pillow mode) as an 8-bit ``mode`` image; transparency is composed over white."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


def decode(source: str | Path | bytes, mode: str, name: str | None = None):
    """Decode a file (a path, or its bytes with ``name`` for messages) into an upright 8-bit ``mode`` image."""
    from PIL import Image, ImageOps

    label = name if name is not None else str(source)
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        with Image.open(stream) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return convert(image, mode)
    except Image.DecompressionBombError as exc:
        raise BadImageError(label, f"decompression bomb: {exc}") from None
    except FileNotFoundError:
        raise BadImageError(label, "the file does not exist (was it moved or deleted after listing?)") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as exc:
        reason = "not an image Pillow can read" if "cannot identify" in str(exc) else str(exc) or type(exc).__name__
        raise BadImageError(label, reason) from None
