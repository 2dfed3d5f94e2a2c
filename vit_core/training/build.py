"""A registered model or trainer built from ``--set`` and ``--encoder`` (:func:`build`), and the input it takes.

The settings are checked before anything is built: :func:`check_keys` refuses a key the constructor
does not take, listing the ones it does; :func:`sample_shape` reads one sample's shape from the
arguments a model names its input channels, frames and size by.  ``vit bench`` and ``vit export`` read
their ``--set`` keys and input shapes through the same functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from vit_core.registry import Component, ModelInfo, ModelLookupError, Registry
from vit_core.training.config import TrainConfig, TrainError


def check_keys(info: ModelInfo, keys: list[str], where: str, prefix: str = "") -> None:
    """Refuse ``--set`` keys that ``info``'s constructor does not take, listing the ones it does
    (``prefix``: ``"encoder."`` for a component's keys)."""
    params = info.signature().parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    unknown = [prefix + k for k in keys if k not in valid]
    if unknown:
        raise TrainError(
            f"--set {', '.join(unknown)}: {where} {info.name!r} takes no such argument; "
            f"valid keys: {', '.join(prefix + k for k in valid)}"
        )


def trained_component(info: ModelInfo) -> str:
    """The component argument of the trainer ``info`` that training updates (``--encoder`` replaces it)."""
    trained = [arg for arg, c in info.components.items() if c.trained]
    if not trained:
        raise TrainError(f"trainer {info.name!r} wraps no trained model, so --encoder has nothing to replace")
    return "encoder" if "encoder" in trained else trained[0]


def sample_shape(info: ModelInfo, config: Mapping[str, Any]) -> tuple[int, ...]:
    """One sample's shape for ``config``: the registered ``input_shape`` with the configuration's input
    channels, frames (video) and image size applied (the arguments ``info.channels_arg``,
    ``info.frames_arg`` and ``info.size_arg`` name them)."""
    shape = list(info.input_shape)

    def positive(arg: str, what: str) -> int | None:
        value = config.get(arg)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TrainError(f"{arg}={value!r}: {info.name!r} takes its input {what} as a positive int")
        return value

    channels = positive(info.channels_arg, "channels")
    if channels is not None:
        shape[0] = channels
    frames = positive(info.frames_arg, "frames") if info.input_kind == "video" else None
    if frames is not None:
        shape[1] = frames
    size = config.get(info.size_arg)
    if size is not None:
        sides = (size, size) if isinstance(size, int) else tuple(size)[-2:] if isinstance(size, (tuple, list)) else ()
        if len(sides) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sides):
            raise TrainError(
                f"{info.size_arg}={size!r}: {info.name!r} takes its input size as a positive int or a "
                "(height, width) pair of them"
            )
        shape[-2], shape[-1] = sides
    return tuple(shape)


@dataclass
class Built:
    """The module to optimise, how to call it, and what to save."""

    info: ModelInfo
    module: nn.Module
    classifier: bool
    shape: tuple[int, ...]
    input_kind: str
    save_config: dict[str, Any] | None  # None: the model recorded its own (VisionModel.init_config)


def build(cfg: TrainConfig, num_classes: int | None, registry: Registry) -> Built:
    """The model or trainer ``cfg.name`` with ``--set``/``--encoder`` applied (its own checks validate values).

    A classifier whose ``num_classes`` is not ``--set`` gets the data's class count ``num_classes``, and so
    does the trained model of a trainer that takes labels.  Component arguments (a trainer's
    ``encoder``, an adapter's frozen ``vit``) take ``--set ARG=NAME`` (another registered model) and
    ``--set ARG.KEY=VALUE`` (that model's arguments).
    """
    info = registry.info(cfg.name)
    if info.kind == "backend":
        raise TrainError(
            f"{info.name!r} is a backend (a trunk), not a model: train the model it plugs into, e.g. "
            f"vit train {info.plugs_into.model if info.plugs_into else 'vit'} --set transformer={info.name!r}"
        )
    own = {k: v for k, v in cfg.overrides.items() if "." not in k}
    check_keys(info, list(own), info.kind)
    if info.kind == "model" and cfg.encoder is not None:
        raise TrainError(f"--encoder is for trainers; {info.name!r} is a model (use --set to change it)")
    components = _components(cfg, info, registry)
    own = {k: v for k, v in own.items() if k not in components}
    if info.kind == "model":
        config = {**{k: v for k, v in info.default_config.items() if k not in components}, **own}
        if num_classes is not None and "num_classes" in info.signature().parameters and "num_classes" not in own:
            config["num_classes"] = num_classes
        if (
            isinstance(config.get("num_classes"), int)
            and num_classes is not None
            and config["num_classes"] < num_classes
        ):
            raise TrainError(f"num_classes={config['num_classes']} but the data has {num_classes} classes")
        module = registry.create(cfg.name, **config, **components)
        return Built(info, module, True, model_input_shape(cfg, info, registry), info.input_kind, None)
    arg = trained_component(info)
    labelled = info.takes_labels and num_classes is not None and f"{arg}.num_classes" not in cfg.overrides
    if labelled and "num_classes" in registry.info(components[arg].model).signature().parameters:
        components[arg] = Component(components[arg].model, {**components[arg].config, "num_classes": num_classes})
    trainer_config = {**{k: v for k, v in info.default_config.items() if k not in components}, **own}
    module, parts = registry.create_with_parts(cfg.name, **trainer_config, **components)
    kind = registry.info(components[arg].model).input_kind
    return Built(info, module, False, _component_shape(components[arg], registry), kind, {**trainer_config, **parts})


def _components(cfg: TrainConfig, info: ModelInfo, registry: Registry) -> dict[str, Component]:
    """``info``'s component arguments with ``--encoder``, ``--set ARG=NAME`` and ``--set ARG.KEY=VALUE`` applied."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in cfg.overrides.items():
        if "." in key:
            arg, _, sub = key.partition(".")
            nested.setdefault(arg, {})[sub] = value
    components = dict(info.components)
    if nested and not components:
        raise TrainError(f"--set {', '.join(nested)}.*: {info.name!r} has no component arguments")
    for arg, value in cfg.overrides.items():
        if arg not in components:
            continue
        if not isinstance(value, str):
            raise TrainError(
                f"--set {arg}={value!r}: {arg} is a component of {info.name!r}; name a registered model "
                f"(--set {arg}={components[arg].model}) or set its arguments with --set {arg}.KEY=VALUE"
            )
        registry.info(value)  # an unknown name is refused with close matches
        components[arg] = Component(value, {}, components[arg].trained)
    if cfg.encoder is not None:
        arg = trained_component(info)
        components[arg] = Component(cfg.encoder, {}, components[arg].trained)
    unknown = [arg for arg in nested if arg not in components]
    if unknown:
        raise TrainError(
            f"--set {unknown[0]}.*: {info.kind} {info.name!r} has no component {unknown[0]!r}; "
            f"components: {', '.join(components)}"
        )
    for arg, component in components.items():
        part_info = registry.info(component.model)
        check_keys(part_info, list(nested.get(arg, {})), f"{arg}=", prefix=f"{arg}.")
        components[arg] = Component(component.model, {**component.config, **nested.get(arg, {})}, component.trained)
    return components


def model_input_shape(cfg: TrainConfig, info: ModelInfo, registry: Registry) -> tuple[int, ...]:
    """One sample's shape for the model ``cfg`` builds (before building it: the data comes first).  A
    model that takes no input arguments of its own and wraps one component (an adapter on its
    backbone) takes that component's input."""
    own = {k: v for k, v in cfg.overrides.items() if "." not in k}
    components = _components(cfg, info, registry)
    takes = info.signature().parameters
    if len(components) == 1 and info.channels_arg not in takes and info.size_arg not in takes:
        return _component_shape(*components.values(), registry)
    return sample_shape(info, {**info.default_config, **own})


def _component_shape(component: Component, registry: Registry) -> tuple[int, ...]:
    """One sample's shape for the registered model ``component`` builds."""
    part = registry.info(component.model)
    return sample_shape(part, {**part.default_config, **component.config})


def set_drop_path(module: nn.Module, rate: float) -> int:
    """``--drop-path RATE``: stochastic depth rising linearly over the model's
    :class:`~vit_core.layers.regularization.DropPath` layers (in order) from 0 to ``rate``; returns how many.
    A model without such layers is refused."""
    from vit_core.layers.regularization import DropPath, drop_path_rates

    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise TrainError(f"--drop-path must be a probability in [0, 1), got {rate}")
    paths = [m for m in module.modules() if isinstance(m, DropPath)]
    if not paths:
        raise TrainError(
            f"--drop-path {rate}: {type(module).__name__} has no stochastic-depth layers (vit_core.layers DropPath); "
            "drop the option for this model"
        )
    for path, prob in zip(paths, drop_path_rates(rate, len(paths))):
        path.prob = prob
    return len(paths)


def load_init(source: str, info: ModelInfo, registry: Registry) -> nn.Module:
    """``--init SOURCE``: the model saved in a folder or run folder (:func:`vit_core.save_model`, ``vit train``) or
    a pretrained source :func:`vit_core.load_pretrained` reads; refused when it is not a model of ``info``."""
    import warnings

    from vit_core.interop.pretrained import load_pretrained
    from vit_core.interop.saving import model_folder

    if info.kind != "model":
        raise TrainError(f"--init is for models; {info.name!r} is a {info.kind}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_pretrained(model_folder(source))
    except (ValueError, TypeError, OSError) as exc:
        raise TrainError(f"--init {source}: {exc}") from None
    try:
        found = registry.info_for_class(type(loaded))
    except ModelLookupError:
        found = None
    if found is None or not registry.saved_as(registry.key(found), info.name):
        kind = registry.key(found) if found is not None else type(loaded).__name__
        raise TrainError(
            f"--init {source}: it holds a {kind!r} model, not {info.name!r}; start {info.name!r} from one of its "
            f"own checkpoints, or train {kind!r}"
        )
    return loaded


def init_overrides(loaded: nn.Module, info: ModelInfo) -> dict[str, Any]:
    """The constructor arguments of the ``--init`` model, as ``--set`` pairs (``num_classes`` left to the data)."""
    config = dict(getattr(loaded, "init_config", {}) or {})
    config.pop("num_classes", None)
    return config


def start_from(loaded: nn.Module, target: nn.Module, info: ModelInfo) -> list[str]:
    """Copy the ``--init`` model's weights into ``target``: a new head (``target``'s own) when the class count
    differs, positions resampled when the input size does; returns what changed, in words."""
    from vit_core.interop.saving import check_state

    changes = []
    classes = getattr(target, "num_classes", None)
    head: set[str] = set()
    if classes is not None and getattr(loaded, "num_classes", classes) != classes:
        loaded.reset_classifier(classes)
        head = {f"head.{name}" for name in (target.head.state_dict() if target.head is not None else {})}
        changes.append(f"a new {classes}-class head")
    size, wanted = loaded.init_config.get(info.size_arg), target.init_config.get(info.size_arg)
    if size != wanted and wanted is not None:
        set_input_size = getattr(loaded, "set_input_size", None)
        if set_input_size is None:
            raise TrainError(
                f"--init: {type(loaded).__name__} cannot resample its positions to {info.size_arg}={wanted}"
            )
        set_input_size(wanted)
        changes.append(f"positions resampled from {info.size_arg}={size} to {wanted}")
    state = {k: v for k, v in loaded.state_dict().items() if k not in head}
    state.update({k: v for k, v in target.state_dict().items() if k in head})
    try:
        check_state("--init", target, state)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    target.load_state_dict(state)
    return changes
