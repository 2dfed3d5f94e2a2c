"""Reading a pretrained source from disk and recognising its format: by its files and its tensor names,
never by a file name, and never running code (safetensors, or ``torch.load(weights_only=True)``).

Formats (:data:`FORMATS`):

* ``"vit-core"``: a :func:`vit_core.save_model` folder (``config.json`` with ``"format": "vit-core/1"``);
* ``"timm"``: timm's ``VisionTransformer`` tensors (``blocks.0.attn.qkv.weight``, ``patch_embed.proj.weight``)
  or those of another timm model built on its blocks (PiT's ``transformers.0.blocks.0.attn.qkv.weight``,
  ``patch_embed.conv.weight``), alone or in a timm hub folder (``config.json`` with ``"architecture"``);
* ``"transformers"``: Hugging Face transformers' ViT / DINOv2 / ViT-MAE tensors
  (``embeddings.patch_embeddings.projection.weight``), in a ``save_pretrained`` folder (``config.json``
  with ``"model_type"``) or a hub cache snapshot;
* ``"vit-pytorch"``: a vit-pytorch state dict (``to_patch_embedding...``, ``transformer.layers.0.0...``).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vit_core.interop.saving import ModelFileError

FORMATS = ("vit-core", "timm", "transformers", "vit-pytorch")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""The weight files a folder may hold, in the order they are preferred."""
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TIMM_BLOCK = re.compile(r"(?:[\w.]+\.)?blocks\.\d+\.attn\.qkv\.weight")
"""The attention tensor of timm's transformer blocks, at the top (ViT) or inside stages (PiT's ``transformers.0.``)."""


class PretrainedFormatError(ModelFileError):
    """A pretrained source that cannot be loaded: the message names the file, the tensor and what was expected."""


@dataclass
class Source:
    """What was read from a pretrained source: its format, tensors, configuration files and where they came from."""

    path: Path
    format: str
    tensors: dict[str, Tensor] = field(default_factory=dict)
    weights_file: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    preprocessor: dict[str, Any] = field(default_factory=dict)


def resolve_snapshot(folder: Path) -> Path:
    """A Hugging Face hub cache folder (``models--org--name``, holding ``refs/`` and ``snapshots/``) -> the
    snapshot ``refs/main`` names (or the only snapshot); any other folder is returned as it is."""
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return folder
    ref = folder / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(found) != 1:
        raise PretrainedFormatError(
            f"{folder}: a hub cache folder with {len(found)} snapshots and no refs/main; pass the snapshot folder"
        )
    return found[0]


def read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PretrainedFormatError(f"{file}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PretrainedFormatError(f"{file}: holds {type(data).__name__}, expected a JSON object")
    return data


def _is_safetensors(file: Path) -> bool:
    with file.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < length <= file.stat().st_size - 8


def read_tensors(file: Path) -> dict[str, Tensor]:
    """The tensors of one weights file: safetensors, or a torch pickle read with ``weights_only=True`` (a file
    holding code is refused); a ``{"state_dict": ...}`` or ``{"model": ...}`` checkpoint is unwrapped."""
    if not file.is_file():
        raise PretrainedFormatError(f"{file}: not found")
    if _is_safetensors(file):
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as exc:  # safetensors raises its own error type on a damaged file
            raise PretrainedFormatError(f"{file}: not a readable safetensors file ({exc}); truncated?") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PretrainedFormatError(
            f"{file}: neither safetensors nor a tensor file torch.load(weights_only=True) accepts "
            f"({type(exc).__name__}: {str(exc)[:200]}); files holding code are refused"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise PretrainedFormatError(f"{file}: holds {type(state).__name__}, not a mapping of tensor names to tensors")
    return dict(state)


def _folder_weights(folder: Path) -> tuple[dict[str, Tensor], Path]:
    for name in SHARD_INDEXES:
        index = folder / name
        if index.is_file():
            shards = sorted(set(read_json(index).get("weight_map", {}).values()))
            if not shards:
                raise PretrainedFormatError(f"{index}: no weight_map")
            tensors: dict[str, Tensor] = {}
            for shard in shards:
                tensors.update(read_tensors(folder / shard))
            return tensors, index
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return read_tensors(folder / name), folder / name
    raise PretrainedFormatError(f"{folder}: no weights file (looked for {', '.join(SHARD_INDEXES + WEIGHT_FILES)})")


def tensors_format(tensors: Mapping[str, Tensor]) -> str | None:
    """The format whose tensor names ``tensors`` carry (see :data:`FORMATS`), or ``None``."""
    keys = list(tensors)
    if any(k.startswith("transformer.layers.") and ".attn." in k for k in keys) and "patch_embed.proj.weight" in keys:
        return "vit-core"
    if any(k.startswith("blocks.") for k in keys) and "patch_embed.proj.weight" in keys:
        return "timm"
    if any(TIMM_BLOCK.fullmatch(k) for k in keys) and any(k.startswith("patch_embed.") for k in keys):
        return "timm"
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys):
        return "transformers"
    if any(k.startswith("to_patch_embedding.") for k in keys):
        return "vit-pytorch"
    return None


def describe_names(tensors: Mapping[str, Tensor], limit: int = 4) -> str:
    keys = list(tensors)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def read_source(path: str | Path) -> Source:
    """Read ``path`` (a folder or a single weights file) and recognise its format."""
    path = Path(path)
    if path.is_dir():
        path = resolve_snapshot(path)
        config_file = path / "config.json"
        config = read_json(config_file) if config_file.is_file() else {}
        if config.get("format") == "vit-core/1":
            return Source(path, "vit-core", config=config)
        tensors, weights = _folder_weights(path)
        found = tensors_format(tensors)
        if "architecture" in config:
            declared = "timm"
        elif "model_type" in config:
            declared = "transformers"
        else:
            declared = found
        if declared is None or found != declared:
            raise PretrainedFormatError(
                f"{weights}: tensor names ({describe_names(tensors)}) are not those of a "
                f"{declared or 'known'} checkpoint; readable formats: {', '.join(FORMATS)}"
            )
        preprocessor_file = path / "preprocessor_config.json"
        preprocessor = read_json(preprocessor_file) if preprocessor_file.is_file() else {}
        return Source(path, found, tensors, weights, config, preprocessor)
    if not path.exists():
        raise PretrainedFormatError(f"{path}: not found (load_pretrained reads local files and folders only)")
    tensors = read_tensors(path)
    found = tensors_format(tensors)
    if found is None:
        raise PretrainedFormatError(
            f"{path}: tensor names ({describe_names(tensors)}) match no readable format "
            f"({', '.join(FORMATS)}): expected e.g. timm's blocks.0.attn.qkv.weight or Hugging Face's "
            "embeddings.patch_embeddings.projection.weight"
        )
    return Source(path, found, tensors, path)
