"""Saving, loading and converting models: a folder of ``config.json`` and ``model.safetensors``.

The folder is the layout model hubs already use, so it can be uploaded unchanged::

    my-model/
      config.json         {"format": "vit-core/1", "model": "vit", "plugin": "vit-core",
                           "distribution": "vit-core", "version": "0.1.0", "vit_core_version": "0.1.0",
                           "config": {"image_size": 32, ...}}
      model.safetensors   the state dict (safetensors: plain tensors, no code)

:func:`load_model` rebuilds the model through the registry from the recorded name and constructor
arguments, checks every tensor's name and shape before loading any, and never unpickles anything.

Constructor arguments are recorded when a model is built: every :class:`vit_core.VisionModel`
subclass stores the keyword arguments it was called with as ``model.init_config``
(:func:`vit_core.models.init_config.record_init_config`).  Only JSON values are saved; tuples are kept as tuples
(``{"__tuple__": [...]}``) and a registered model passed as an argument (an adapter's ``vit=``) is
saved as its own name and configuration (``{"__model__": {...}}``).  Anything else (a module
instance such as ``transformer=Nystromformer(...)``, a class) cannot be rebuilt from a file:
:func:`save_model` raises a ``TypeError`` naming the argument.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from vit_core.registry import Registry

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "vit-core/1"
_TUPLE, MODEL_KEY = "__tuple__", "__model__"


class ModelFileError(ValueError):
    """A saved model folder that cannot be loaded: the message names the file and what is wrong."""


# Encoding configurations.


def _encode(value: Any, where: str, registry: Registry | None = None) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}={value!r} is not a finite number; JSON cannot hold it")
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{where}[{i}]", registry) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]", registry) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where} is a mapping with non-string keys; JSON cannot hold it")
        if _TUPLE in value or MODEL_KEY in value:
            raise TypeError(f"{where} uses the reserved key {_TUPLE!r} or {MODEL_KEY!r}")
        return {k: _encode(v, f"{where}.{k}", registry) for k, v in value.items()}
    if isinstance(value, nn.Module) and isinstance(getattr(value, "init_config", None), dict):
        return {MODEL_KEY: model_config(value, where=where, registry=registry)}
    raise TypeError(
        f"constructor argument {where}={type(value).__name__} cannot be saved: a saved model is rebuilt from "
        "JSON values (numbers, strings, lists, tuples, mappings) and registered models; build the model from "
        "such arguments (e.g. transformer='nystrom' instead of a module instance) or pass "
        "save_model(..., config=...) with arguments that rebuild it"
    )


def decode_value(value: Any, where: str, registry: Registry) -> Any:
    if isinstance(value, list):
        return [decode_value(v, where, registry) for v in value]
    if isinstance(value, dict):
        if set(value) == {_TUPLE}:
            return tuple(decode_value(v, where, registry) for v in value[_TUPLE])
        if set(value) == {MODEL_KEY}:
            return _build(value[MODEL_KEY], where, registry)
        return {k: decode_value(v, where, registry) for k, v in value.items()}
    return value


def model_config(
    model: nn.Module,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    where: str = "model",
    registry: Registry | None = None,
) -> dict[str, Any]:
    """The ``config.json`` content of ``model``: its registered name, versions and constructor arguments."""
    from vit_core import __version__
    from vit_core.registry import get_registry

    registry = registry if registry is not None else get_registry()
    if name is not None:
        info = registry.info(name)
    else:
        try:
            info = registry.info_for_class(type(model))
        except KeyError:
            raise TypeError(
                f"{where}: {type(model).__qualname__} is not a registered model class; pass "
                "save_model(model, path, name=<registered name>, config=<its constructor arguments>)"
            ) from None
    if info.preset_of is not None:
        info = registry.info(f"{info.plugin}:{info.preset_of}")
    if config is None:
        config = getattr(model, "init_config", None)
        if not isinstance(config, dict):
            raise TypeError(
                f"{where}: {type(model).__qualname__} did not record its constructor arguments (init_config; "
                "VisionModel subclasses do); pass save_model(model, path, config={...})"
            )
    positional = [k for k in config if k.startswith("*")]
    if positional:
        raise TypeError(f"{where}: built with extra positional arguments {positional}; use keyword arguments")
    return {
        "format": FORMAT,
        "model": info.name,
        "plugin": info.plugin,
        "distribution": info.distribution,
        "version": info.version,
        "vit_core_version": __version__,
        "config": {k: _encode(v, f"{where}.{k}" if where != "model" else k, registry) for k, v in config.items()},
    }


def _build(record: Any, where: str, registry: Registry) -> nn.Module:
    """Build the model a ``config.json`` record names, through the registry (its class, the recorded arguments)."""
    from vit_core.registry import ModelLookupError

    if not isinstance(record, dict) or not isinstance(record.get("model"), str):
        raise ModelFileError(f"{where}: no 'model' name in the record")
    if not isinstance(record.get("config"), dict):
        raise ModelFileError(f"{where}: no 'config' mapping of constructor arguments in the record")
    name, plugin = record["model"], record.get("plugin")
    try:
        # The plugin that saved it must provide the name: another plugin's model of that name is not it.
        info = registry.info(f"{plugin}:{name}" if plugin else name)
    except ModelLookupError as exc:
        dist = record.get("distribution") or plugin
        version = record.get("version")
        hint = f"; install the plugin distribution {dist!r}" if dist else ""
        hint += f" (it was saved with {dist} {version})" if dist and version else ""
        raise ModelFileError(f"{where}: model {name!r} is not installed ({exc}){hint}") from None
    config = {k: decode_value(v, f"{where}.{k}", registry) for k, v in record["config"].items()}
    try:
        return info.load_class()(**config)
    except Exception as exc:
        raise ModelFileError(
            f"{where}: building {info.describe_origin()} with the saved arguments raised {type(exc).__name__}: {exc}"
        ) from exc


# Saving and loading.


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors, each with its own storage (safetensors refuses shared ones)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in model.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if ident in seen or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        seen.add((tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes()))
        out[key] = tensor
    return out


def save_model(
    model: nn.Module,
    path: str | Path,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` to the folder ``path``: ``config.json`` and ``model.safetensors``.

    ``name`` (registered name) defaults to the entry whose class ``model`` is; ``config`` (constructor
    arguments) to what the model recorded at construction (``model.init_config``); ``registry`` to the
    process-wide one.  The model's ``pretrained_cfg`` (its preprocessing and class names, timm's vocabulary),
    when it has one, is saved too.  ``weights`` (CPU tensors) are written in place of ``model``'s state dict: a
    sharded model's, gathered whole (:mod:`vit_core.training.checkpoint` under FSDP).  The folder is written
    beside its final name and swapped into place, so a reader never sees a half-written model, even if the
    process is killed meanwhile.  Returns the folder.
    """
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    record = model_config(model, name, config, registry=registry)
    pretrained_cfg = getattr(model, "pretrained_cfg", None)
    if pretrained_cfg:
        record["pretrained_cfg"] = json.loads(json.dumps(dict(pretrained_cfg)))
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"path {str(folder)!r} is a file; save_model writes a folder")
    with replaced_folder(folder) as partial:
        tensors = state_tensors(model) if weights is None else {k: v.contiguous() for k, v in weights.items()}
        save_file(tensors, str(partial / WEIGHTS_FILE), metadata={"format": "pt", "model": record["model"]})
        (partial / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return folder


@contextlib.contextmanager
def replaced_folder(folder: Path) -> Iterator[Path]:
    """Yield a fresh folder beside ``folder``; when the block ends without error it takes ``folder``'s place
    (the old one, if any, is renamed away first and removed last).  Killed at any moment, ``folder`` is either
    the old complete folder, the new complete one, or absent with the old one kept as ``NAME.old``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        yield partial
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            folder.rename(old)
        partial.rename(folder)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


RUN_CHECKPOINTS = ("best", "checkpoint")
"""The model folders of a ``vit train`` run folder, in the order a run folder resolves to them."""


def model_folder(path: str | Path) -> Path:
    """The saved-model folder ``path`` names: itself, or for a ``vit train`` run folder its best checkpoint
    (``best/``) when it has one, else its last (``checkpoint/``)."""
    folder = Path(path).expanduser()
    if (folder / CONFIG_FILE).is_file():
        return folder
    for name in RUN_CHECKPOINTS:
        if (folder / name / CONFIG_FILE).is_file():
            return folder / name
    return folder


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / CONFIG_FILE
    if not file.is_file():
        raise ModelFileError(f"{file}: not found; a saved model folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        record = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{file}: not valid JSON ({exc}); the file is truncated or corrupted") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ModelFileError(f"{file}: format {found!r} is not {FORMAT!r} (not written by vit_core.save_model)")
    return record


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not file.is_file():
        raise ModelFileError(f"{file}: not found")
    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises its own SafetensorsError (and OSError) on a damaged file
        raise ModelFileError(f"{file}: not a readable safetensors file ({exc}); truncated or corrupted?") from None


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating-point"
    if dtype.is_complex:
        return "complex"
    return "bool" if dtype == torch.bool else "integer"


def check_state(file: Path | str, model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Missing, unexpected, mis-shaped or mis-typed tensors: one :class:`ModelFileError` naming the file and
    the tensors.

    A tensor of another kind than the model's (an integer tensor for a floating-point parameter) is an
    error, since ``load_state_dict`` would silently cast it; floating-point precisions may differ
    (:func:`load_model` keeps the saved one).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    shapes = [
        f"{k} {tuple(v.shape)} (the model has {tuple(expected[k].shape)})"
        for k, v in tensors.items()
        if k in expected and v.shape != expected[k].shape
    ]
    dtypes = [
        f"{k} {v.dtype} (the model has {expected[k].dtype})"
        for k, v in tensors.items()
        if k in expected and _dtype_kind(v.dtype) != _dtype_kind(expected[k].dtype)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {_names(missing)}")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s): {_names(extra)}")
    if shapes:
        problems.append(f"{len(shapes)} tensor(s) whose shape does not match the configuration: {_names(shapes)}")
    if dtypes:
        problems.append(f"{len(dtypes)} tensor(s) whose dtype does not match the model's: {_names(dtypes)}")
    if problems:
        raise ModelFileError(f"{file}: " + "; ".join(problems))


def load_model(
    path: str | Path, *, map_location: str | torch.device = "cpu", registry: Registry | None = None
) -> nn.Module:
    """Rebuild the model saved by :func:`save_model` in the folder ``path`` (in eval mode); a ``vit train`` run
    folder stands for its best checkpoint (:func:`model_folder`).  ``model.pretrained_cfg`` holds the saved
    preprocessing and class names (``{}`` when none was saved).

    Raises :class:`ModelFileError` (a ``ValueError``) naming the file when it is missing, truncated or
    corrupted, when the model it names is not installed (with the plugin distribution to install), or
    when its tensors do not match the configuration (missing, unexpected or mis-shaped tensors):
    the model is checked whole before any weight is loaded, so nothing is returned half-loaded.
    """
    folder = model_folder(path)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: not a folder written by vit_core.save_model")
    record = _read_config(folder)
    tensors = _read_weights(folder / WEIGHTS_FILE)
    from vit_core.registry import get_registry

    model = _build(record, str(folder / CONFIG_FILE), registry if registry is not None else get_registry())
    check_state(folder / WEIGHTS_FILE, model, tensors)
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())
    model.load_state_dict(tensors, strict=True)
    model.pretrained_cfg = dict(record.get("pretrained_cfg") or {})
    return model.to(map_location).eval()


# Converting vit-pytorch weights.


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file written by ``torch.save(model.state_dict(), path)``, read with ``weights_only=True``
    (tensors and plain containers only: a file holding code is refused, never run)."""
    file = Path(path)
    if not file.is_file():
        raise ModelFileError(f"{file}: not found")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(
            f"{file}: not a state dict torch.load(weights_only=True) can read ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelFileError(f"{file}: holds {type(state).__name__}, not a state dict (a mapping of names to tensors)")
    return dict(state)


def importer_models(registry: Registry | None = None) -> list[tuple[str, str | None]]:
    """``(name, reference class)`` of every registered model (not preset) that has a weight importer."""
    from vit_core.registry import get_registry

    registry = registry if registry is not None else get_registry()
    return [(registry.key(i), i.reference) for i in registry.list(kind="model", presets=False) if i.importer]


def convert_reference(
    name: str, state_dict_path: str | Path, out_dir: str | Path, *, registry: Registry | None = None, **config: Any
) -> Path:
    """A vit-pytorch state dict file -> a :func:`save_model` folder, through the importer ``name`` registered.

    ``config`` updates ``name``'s default configuration, itself updated with the arguments the
    reference hard-codes (``ModelInfo.reference_config``), and must be the one the reference model
    was built with (the importer checks every tensor against it).  Returns the folder.
    """
    from vit_core.interop.reference import load_reference_weights
    from vit_core.registry import get_registry

    registry = registry if registry is not None else get_registry()
    info = registry.info(name)
    if not info.importer:
        have = ", ".join(n for n, _ in importer_models(registry)) or "none"
        raise ValueError(f"model {name!r} registers no weight importer; models with importers: {have}")
    state = read_state_dict(state_dict_path)
    config = {**info.reference_config, **config}
    model = registry.create(name, **config)
    try:
        load_reference_weights(model, state, name=registry.key(info), registry=registry)
    except (KeyError, RuntimeError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        fixed = info.reference_config and f" ({info.reference} hard-codes {dict(info.reference_config)}, applied here)"
        raise ModelFileError(
            f"{state_dict_path}: does not import into {name!r} built with {dict(info.default_config) | config}"
            f"{fixed or ''}: {message}; pass the configuration the reference model was built with"
        ) from None
    return save_model(model.eval(), out_dir, name=registry.key(info), registry=registry)
