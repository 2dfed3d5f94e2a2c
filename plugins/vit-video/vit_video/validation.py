"""Input checks shared by the video models: each error names the argument, the value and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vit_core.validation import as_tuple, check_divisible, check_positive_int, check_tensor

VIDEO_LAYOUT = "(batch, channels, frames, height, width)"


def check_video_config(
    image_size: int | Sequence[int],
    image_patch_size: int | Sequence[int],
    frames: int,
    frame_patch_size: int,
) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
    """Check the size arguments of a patch-based video model; return ``(input_size, patch_size, grid)``
    3-tuples (``(frames, height, width)``, the tube's, and the tube grid)."""
    image_size = as_tuple("image_size", image_size)
    image_patch_size = as_tuple("image_patch_size", image_patch_size)
    check_positive_int("frames", frames)
    check_positive_int("frame_patch_size", frame_patch_size)
    check_divisible("frames", frames, "frame_patch_size", frame_patch_size)
    for side, patch, axis in zip(image_size, image_patch_size, ("height", "width"), strict=True):
        if side % patch:
            raise ValueError(
                f"image_size {image_size} must be divisible by image_patch_size {image_patch_size} "
                f"({axis}: {side} % {patch} != 0)"
            )
    grid = (frames // frame_patch_size, *(side // patch for side, patch in zip(image_size, image_patch_size)))
    return (frames, *image_size), (frame_patch_size, *image_patch_size), grid


def check_video(
    x: Any,
    *,
    channels: int,
    input_size: Sequence[int],
    patch_size: Sequence[int] | None = None,
    exact: bool = False,
) -> tuple[int, int, int]:
    """Validate a ``(batch, channels, frames, height, width)`` video; return its ``(frames, height, width)``.

    ``input_size`` is ``(frames, height, width)`` the model was built for: the video may not be
    larger (nor differ at all with ``exact``); with ``patch_size`` every axis must divide by it.
    """
    check_tensor("video", x, layout=VIDEO_LAYOUT, spatial_dims=3, channels=channels)
    size = tuple(x.shape[2:])
    frames, height, width = input_size
    if exact and size != tuple(input_size):
        raise ValueError(
            f"video must be {frames} frames of {height}x{width} (frames={frames}, "
            f"image_size={(height, width)}), got shape {tuple(x.shape)}"
        )
    if size[0] > frames:
        raise ValueError(f"video has {size[0]} frames, more than frames={frames} the model was built for")
    if size[1] > height or size[2] > width:
        raise ValueError(
            f"video frames are {size[1]}x{size[2]}, larger than image_size {(height, width)} the model was built for"
        )
    if patch_size is not None:
        if size[0] % patch_size[0]:
            raise ValueError(f"video has {size[0]} frames, not divisible by frame_patch_size={patch_size[0]}")
        if size[1] % patch_size[1] or size[2] % patch_size[2]:
            raise ValueError(
                f"video frames are {size[1]}x{size[2]}, not divisible by image_patch_size {tuple(patch_size[1:])}"
            )
    return size  # type: ignore[return-value]
