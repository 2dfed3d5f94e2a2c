"""Pretrained weights from local files and folders: timm, Hugging Face transformers, vit-pytorch and our own
format, recognised by their files and tensor names, never downloaded (docs/pretrained.md).

:func:`load_pretrained` returns a :class:`vit_core.ViT` (or the saved model) in eval mode whose outputs equal
the source implementation's, with ``pretrained_cfg`` (timm's vocabulary) taken from the source.  One module
per source family: :mod:`~vit_core.interop.pretrained.files` (reading, format recognition),
:mod:`~vit_core.interop.pretrained.timm` (timm's architectures and layout, the common one),
:mod:`~vit_core.interop.pretrained.hf` (transformers, renamed into timm's layout).

A plugin model loads timm weights too when its registry entry names a ``timm_importer`` and the
``timm_architectures`` it takes (vit-hierarchical's PiT: ``pit_*``); the core knows nothing else of it.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vit_core.interop.pretrained import hf, timm
from vit_core.interop.pretrained.files import FORMATS, PretrainedFormatError, Source, read_source
from vit_core.interop.saving import load_model

__all__ = ["FORMATS", "OVERRIDES", "PretrainedFormatError", "load_pretrained"]

OVERRIDES = ("num_classes", "image_size", "dropout", "emb_dropout", "dynamic_img_size")
"""What may change when loading a timm, transformers or vit-core checkpoint: a new head (``num_classes``),
another input size (positions resampled, antialiased as timm does), dropout, dynamic input sizes."""

ARCHITECTURE_KEYS = ("dim", "depth", "heads", "mlp_dim", "patch_size", "registers", "distill_token", "activation")
"""The arguments a registry preset and a checkpoint that describes itself must agree on."""


def _check_overrides(overrides: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(
            f"load_pretrained({where}): {', '.join(unknown)} cannot be overridden (they would not fit the "
            f"weights); overridable: {', '.join(OVERRIDES)}"
        )


def _registry_config(arch: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The ViT arguments, pretrained_cfg and key of the registered ``arch`` (a preset of ``vit``)."""
    from vit_core.registry import get_registry

    registry = get_registry()
    info = registry.info(arch)
    base = info.preset_of or info.name
    if info.plugin != "vit-core" or base != "vit":
        raise ValueError(f"arch={arch!r} is {info.describe_origin()}; timm and transformers weights load into 'vit'")
    preset = registry.info(f"{info.plugin}:{base}").presets.get(info.name) if info.preset_of else None
    cfg = dict(preset.pretrained_cfg) if preset is not None else {}
    return dict(info.default_config), cfg, registry.key(info)


def _check_arch(config: Mapping[str, Any], expected: Mapping[str, Any], arch: str, where: str) -> None:
    differ = [
        f"{k}={config[k]!r} (the preset: {expected[k]!r})"
        for k in ARCHITECTURE_KEYS
        if k in config and k in expected and config[k] != expected[k]
    ]
    if differ:
        raise PretrainedFormatError(f"{where}: holds a model that is not {arch!r}: {'; '.join(differ)}")


def _timm_plugin_entry(name: str) -> Any:
    """The registered model whose ``timm_architectures`` take the timm architecture ``name`` (one that
    :mod:`~vit_core.interop.pretrained.timm` does not map itself), or ``None``."""
    from vit_core.registry import get_registry

    base = name.split(".", 1)[0]
    if timm.ARCH.fullmatch(base):
        return None
    for info in get_registry().list(kind="model", presets=False):
        if info.timm_importer and any(fnmatch.fnmatchcase(base, p) for p in info.timm_architectures):
            return info
    return None


def _plugin_architectures() -> str:
    """``"; plugins map: pit_* (pit)"``: the timm architectures the installed plugins load, for messages."""
    from vit_core.registry import get_registry

    found = [
        f"{', '.join(info.timm_architectures)} ({info.name})"
        for info in get_registry().list(kind="model", presets=False)
        if info.timm_importer
    ]
    return f"; plugins map: {'; '.join(found)}" if found else ""


def _source_cfg(source: Source, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with what the source's ``config.json`` says of its preprocessing and label names."""
    cfg.update({k: v for k, v in (source.config.get("pretrained_cfg") or {}).items() if k in PRETRAINED_KEYS})
    if source.config.get("label_names"):
        cfg["label_names"] = list(source.config["label_names"])
    return cfg


def _finish(
    model: nn.Module, cfg: dict[str, Any], source_classes: int, channels: int, overrides: Mapping[str, Any]
) -> nn.Module:
    """``model`` in eval mode with ``pretrained_cfg``: ``cfg`` as the overrides change it (a new head drops the
    label names; another ``image_size`` is the new input size)."""
    if "num_classes" in overrides and overrides["num_classes"] != source_classes:
        cfg.pop("label_names", None)
    if "image_size" in overrides:
        size = overrides["image_size"]
        cfg["input_size"] = (channels, *((size, size) if isinstance(size, int) else tuple(size)))
    model.pretrained_cfg = cfg
    return model.eval()


def _load_timm_plugin(src: Source, name: str, info: Any, overrides: Mapping[str, Any]) -> nn.Module:
    """timm weights of ``name`` loaded by the ``timm_importer`` of the plugin entry ``info``."""
    from vit_core.registry.schema import resolve

    where = str(src.path / "config.json") if src.config else str(src.path)
    args = dict(src.config.get("model_args") or {})
    if "num_classes" in src.config:
        args["num_classes"] = src.config["num_classes"]
    try:
        importer = resolve(info.timm_importer)
    except Exception as exc:
        raise PretrainedFormatError(
            f"{where}: timm architecture {name!r} loads into {info.describe_origin()}, whose timm_importer "
            f"{info.timm_importer!r} does not import ({type(exc).__name__}: {exc})"
        ) from None
    model = importer(name.split(".", 1)[0], args, src.tensors, str(src.weights_file or src.path), **overrides)
    cfg = _source_cfg(src, dict(model.pretrained_cfg))
    return _finish(model, cfg, args.get("num_classes", 1000), args.get("in_chans", 3), overrides)


def _timm_config(source: Source, arch: str | None) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """ViT arguments and pretrained_cfg of a timm source; the registry key when ``arch`` is a registered name."""
    where = str(source.path / "config.json") if source.config else str(source.path)
    name = source.config.get("architecture") or arch
    if name is None:
        raise PretrainedFormatError(
            f"{source.path}: timm weights without a config.json; pass arch=<timm architecture> "
            "(e.g. arch='vit_base_patch16_224') or a registered preset (e.g. 'vit-b-16-augreg')"
        )
    registered = None
    if source.config or "_" in name:
        try:
            args = timm.arch_args(name)
        except ValueError as exc:
            raise PretrainedFormatError(f"{where}: {exc}{_plugin_architectures()}") from None
        args.update(source.config.get("model_args") or {})
        if "num_classes" in source.config:
            args["num_classes"] = source.config["num_classes"]
        config = timm.to_vit_config(args, where)
        cfg = _source_cfg(source, timm.default_pretrained_cfg(name, args))
    else:
        config, cfg, registered = _registry_config(name)
        if source.config.get("label_names"):
            cfg["label_names"] = list(source.config["label_names"])
    return config, cfg, registered


PRETRAINED_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode", "label_names")
"""The keys of ``pretrained_cfg`` (timm's vocabulary) a loaded model carries."""


def _build_and_load(
    source: Source, tensors: dict[str, torch.Tensor], config: dict[str, Any], overrides: Mapping[str, Any]
) -> nn.Module:
    from vit_core.models.vit import ViT

    source_size = config["image_size"]
    source_size = (source_size, source_size) if isinstance(source_size, int) else tuple(source_size)
    patch = config["patch_size"]
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
    model = ViT(**{**config, **overrides})
    where = str(source.weights_file or source.path)
    state, dropped = timm.convert_state(
        tensors, model, where, source_grid=(source_size[0] // patch[0], source_size[1] // patch[1])
    )
    return timm.load_converted(model, state, where, dropped)


def load_pretrained(source: str | Path, *, arch: str | None = None, **overrides: Any) -> nn.Module:
    """Load the pretrained model at ``source`` (a local folder or weights file; never downloaded), in eval mode.

    ``source``: a timm hub folder (``config.json`` with ``architecture`` [+ ``model_args``] and
    ``model.safetensors`` / ``pytorch_model.bin``), a transformers ``save_pretrained`` folder or hub cache
    snapshot (``config.json`` with ``model_type``), a :func:`vit_core.save_model` folder, or a single weights
    file: timm's (then ``arch`` names its timm architecture, ``"vit_base_patch16_224"``, or a registered preset,
    ``"vit-b-16-augreg"``) or vit-pytorch's (then ``arch`` names the registered model, and ``overrides`` are
    the configuration it was built with, as ``vit convert``).  The format is recognised from the files and
    tensor names.  ``overrides``: see :data:`OVERRIDES` (``num_classes`` gives a new head, with a warning;
    ``image_size`` resamples the positions as timm does).  The returned model carries ``pretrained_cfg``.

    Raises :class:`PretrainedFormatError` (a ``ValueError``) naming the file and the tensor for an unknown
    format, a tensor that fits no known layout, an architecture that cannot be mapped, or shapes that disagree
    with the configuration; nothing is returned half-loaded.
    """
    if arch is not None and not isinstance(arch, str):
        raise TypeError(f"arch must be a timm architecture or registered model name (str), got {arch!r}")
    src = read_source(source)
    if src.format == "vit-pytorch":
        return _load_reference(src, arch, overrides)
    _check_overrides(overrides, str(source))
    if src.format == "vit-core":
        return _load_own(src, overrides)
    if src.format == "transformers":
        if not src.config:
            raise PretrainedFormatError(
                f"{src.path}: transformers weights without their config.json; pass the save_pretrained folder"
            )
        where = str(src.path / "config.json")
        config = hf.to_vit_config(src.config, where)
        cfg = hf.pretrained_cfg(src.config, src.preprocessor, config)
        tensors, registered = hf.to_timm_layout(src.tensors, str(src.weights_file)), None
    else:
        name = src.config.get("architecture") or arch
        entry = _timm_plugin_entry(name) if name and "_" in name else None
        if entry is not None:
            return _load_timm_plugin(src, name, entry, overrides)
        config, cfg, registered = _timm_config(src, arch)
        tensors = src.tensors
    if arch is not None and registered is None and "_" not in arch:
        expected = _registry_config(arch)[0]
        _check_arch(config, expected, arch, str(src.path))
    model = _build_and_load(src, tensors, config, overrides)
    return _finish(model, cfg, config.get("num_classes", 1000), config.get("channels", 3), overrides)


def _load_own(src: Source, overrides: Mapping[str, Any]) -> nn.Module:
    model = load_model(src.path)
    if "num_classes" in overrides and overrides["num_classes"] != getattr(model, "num_classes", None):
        model.reset_classifier(overrides["num_classes"])
        model.pretrained_cfg.pop("label_names", None)
        warnings.warn(f"{src.path}: a new {overrides['num_classes']}-class head is initialised at random", stacklevel=3)
    if "image_size" in overrides:
        model.set_input_size(overrides["image_size"])
    for key in ("dropout", "emb_dropout", "dynamic_img_size"):
        if key in overrides:
            raise TypeError(f"load_pretrained({src.path}): {key} cannot be changed on a saved vit-core model")
    return model.eval()


def _load_reference(src: Source, arch: str | None, overrides: Mapping[str, Any]) -> nn.Module:
    from vit_core.interop.reference import load_reference_weights
    from vit_core.registry import get_registry

    if arch is None or "_" in arch:
        raise PretrainedFormatError(
            f"{src.path}: holds vit-pytorch tensor names ({next(iter(src.tensors))}, ...), not timm's or Hugging "
            f"Face's; pass arch=<registered vit_core model> (e.g. arch='vit') and the configuration the reference "
            f"model was built with" + (f" (arch={arch!r} is a timm name)" if arch else "")
        )
    registry = get_registry()
    info = registry.info(arch)
    model = registry.create(arch, **{**info.reference_config, **overrides})
    try:
        load_reference_weights(model, src.tensors, name=registry.key(info), registry=registry)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise PretrainedFormatError(
            f"{src.path}: does not import into {arch!r} built with {dict(overrides)}: {exc}; pass the "
            "configuration the reference model was built with"
        ) from None
    model.pretrained_cfg = {}
    return model.eval()
