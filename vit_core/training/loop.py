"""The training loop behind ``vit train``: any registered classifier, or a registered trainer around an encoder.

AdamW, linear warm-up then cosine decay (set per step, so a resumed run continues the same curve),
gradient clipping, optional label smoothing, a seed, held-out evaluation (accuracy for classifiers,
loss for trainers), metrics as JSON lines and checkpoints: the model through
:func:`vit_core.save_model` (``config.json`` + ``model.safetensors``) and the optimizer state beside
it (``optimizer.safetensors`` + ``state.json``; no pickle anywhere).

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
``DistributedDataParallel`` (nccl on GPU, gloo on CPU) and each rank reads its shard of every global
batch through a ``DistributedSampler``; a single process reads the same sampler with one replica, so
the global batches (and, without dropout, the weights) are the same in both.  Only rank 0 writes files
and prints.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vit_core.training.data import Dataset, load
from vit_core.registry import Component, ModelInfo, Registry, get_registry

CHECKPOINT = "checkpoint"
METRICS = "metrics.jsonl"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


class TrainError(ValueError):
    """A training request that cannot run: the message says what to change."""


@dataclass
class TrainConfig:
    """Everything ``vit train`` takes; ``overrides`` are ``--set`` pairs (``encoder.dim`` for a component)."""

    name: str
    encoder: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str | None = None  # None: digits, or on --resume the checkpoint's
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    label_smoothing: float = 0.0
    clip: float = 1.0
    seed: int = 0
    max_steps: int | None = None
    out: Path | None = None
    resume: Path | None = None
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    log_every: int = 10


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["dim=128", "image_size=[32,48]", "pool=mean"]`` -> ``{"dim": 128, "image_size": (32, 48),
    "pool": "mean"}``: each value a Python literal or JSON (``true``, ``null``), lists made tuples;
    anything else is a string.  Every command's ``--set`` reads its values this way."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise TrainError(f"--set {pair!r}: expected key=value, e.g. --set dim=128")
        out[key.strip()] = _tuples(_literal(text))
    return out


def _literal(text: str) -> Any:
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(text)
        except (ValueError, SyntaxError):  # json.JSONDecodeError is a ValueError
            continue
    return text


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


# Building the model.


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


def _trained_component(info: ModelInfo) -> str:
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
    arg = _trained_component(info)
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
        arg = _trained_component(info)
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


# Schedule, checkpoints, metrics.


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up over ``warmup`` steps to ``base``, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def save_checkpoint(folder: Path, built: Built, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """Model (``save_model``), optimizer tensors (safetensors) and the loop's state (JSON) in ``folder``."""
    from safetensors.torch import save_file

    from vit_core.interop.saving import save_model

    save_model(built.module, folder, name=built.info.name, config=built.save_config)
    opt = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": value.detach().contiguous().cpu()
        for index, entries in opt["state"].items()
        for key, value in entries.items()
        if isinstance(value, torch.Tensor)
    }
    save_file(tensors, str(folder / OPTIMIZER_FILE))
    groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
    (folder / STATE_FILE).write_text(json.dumps({**state, "param_groups": groups}, indent=2) + "\n")
    return folder


def read_checkpoint(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The loop state and optimizer state dict saved in ``folder``, after checking they belong to ``name``."""
    from safetensors.torch import load_file

    from vit_core.interop.saving import CONFIG_FILE

    if not (folder / STATE_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise TrainError(f"--resume {folder.parent}: no checkpoint in it (expected {folder}/{STATE_FILE})")
    saved = json.loads((folder / CONFIG_FILE).read_text()).get("model")
    registry = get_registry()
    if not registry.saved_as(saved, name):
        raise TrainError(f"--resume {folder.parent}: the checkpoint is of model {saved!r}, not {name!r}")
    state = json.loads((folder / STATE_FILE).read_text())
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, _, entry = key.partition(".")
        per_param.setdefault(int(index), {})[entry] = value
    return state, {"state": per_param, "param_groups": state.pop("param_groups")}


def checkpoint_settings(folder: Path, info: ModelInfo) -> tuple[str | None, dict[str, Any]]:
    """The ``--encoder`` and ``--set`` pairs that rebuild the model saved in ``folder`` (its ``config.json``):
    a model's constructor arguments; a trainer's own, and ``component.key`` for the models inside it."""
    from vit_core.interop.saving import _MODEL, CONFIG_FILE, _decode

    registry = get_registry()
    config = json.loads((folder / CONFIG_FILE).read_text())["config"]
    encoder, overrides = None, {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {_MODEL}:
            record = value[_MODEL]
            if info.kind == "trainer" and key == _trained_component(info):
                encoder = record["model"]
            overrides.update({f"{key}.{k}": _decode(v, f"{key}.{k}", registry) for k, v in record["config"].items()})
        else:
            overrides[key] = _decode(value, key, registry)
    return encoder, overrides


def resumed_config(cfg: TrainConfig, info: ModelInfo, state: Mapping[str, Any]) -> TrainConfig:
    """``cfg`` with the checkpoint's model settings and data: a resumed run continues the same model on the
    same data; a ``--set``, ``--encoder`` or ``--data`` that contradicts the checkpoint is refused."""
    folder = cfg.resume / CHECKPOINT
    encoder, saved = checkpoint_settings(folder, info)
    for key, value in cfg.overrides.items():
        if key in saved and saved[key] != value:
            raise TrainError(
                f"--set {key}={value!r}: the checkpoint in {cfg.resume} was trained with {key}={saved[key]!r}; "
                "--resume continues that model (drop the --set, or start a new run with --out)"
            )
    if cfg.encoder is not None and encoder is not None and cfg.encoder != encoder:
        raise TrainError(f"--encoder {cfg.encoder}: the checkpoint in {cfg.resume} trained --encoder {encoder}")
    data = state.get("data")
    if cfg.data is not None and data is not None and cfg.data != data:
        raise TrainError(f"--data {cfg.data}: the checkpoint in {cfg.resume} was trained on --data {data}")
    return replace(cfg, encoder=encoder or cfg.encoder, overrides={**saved, **cfg.overrides}, data=data or cfg.data)


class Metrics:
    """JSON lines in ``path`` (appended on resume); nothing when ``path`` is None (ranks other than 0)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, **record: Any) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


# Distributed helpers.


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _device(requested: str | None, world: int, local_rank: int) -> torch.device:
    """``--device``, else cuda when present; under torchrun a bare ``cuda`` means this process's GPU."""
    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None and world > 1:
            return torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank if world > 1 else 0)
    return torch.device("cpu")


def _threads(requested: int | None) -> int:
    """CPU threads: ``--threads``, else ``OMP_NUM_THREADS``, else 1.

    One thread per process by default, as torchrun sets: the registered default configurations are small,
    so a step is dominated by dispatching operators, which intra-op threads do not speed up; on a busy
    machine their spin-waiting made a step of ``vit train vit`` 15-20 times slower (20 against 380 images/s).
    """
    if requested is not None:
        if requested < 1:
            raise TrainError(f"--threads must be at least 1, got {requested}")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else 1


# The loop.


@dataclass
class Result:
    """What the run ended with (``accuracy`` None for trainers)."""

    name: str
    params: int
    steps: int
    epochs: int
    seconds: float
    train_loss: float
    test_loss: float
    accuracy: float | None
    images_per_s: float
    out: Path | None
    data: str
    world: int
    loop_overhead: float = float("nan")
    history: list[dict[str, Any]] = field(default_factory=list)


class Batches:
    """The sampler's indices of an epoch in consecutive batches, each gathered from the tensors in one
    indexing (what a ``DataLoader`` over a ``TensorDataset`` yields, without its per-sample collation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, sampler: Any, batch_size: int) -> None:
        self.x, self.y, self.sampler, self.batch_size = x, y, sampler, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Any:
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        for batch in order.split(self.batch_size):
            yield self.x[batch], self.y[batch]


def _call(built: Built, model: nn.Module, x: Any, y: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, Any]:
    if built.input_kind == "image-list":
        x = list(x)
    if built.classifier:
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=smoothing), logits
    loss = model(x, y) if built.info.takes_labels else model(x)
    return loss, None


@torch.no_grad()
def evaluate(built: Built, data: Dataset, device: torch.device, batch_size: int) -> tuple[float, float | None]:
    """Held-out mean loss, and accuracy for a classifier (the model in eval mode, put back after)."""
    module = built.module
    was_training = module.training
    module.eval()
    total, correct, count = 0.0, 0, 0
    for start in range(0, len(data.test_y), batch_size):
        x = data.test_x[start : start + batch_size].to(device)
        y = data.test_y[start : start + batch_size].to(device)
        loss, logits = _call(built, module, x, y, 0.0)
        total += float(loss) * len(y)
        count += len(y)
        if logits is not None:
            correct += int((logits.argmax(-1) == y).sum())
    module.train(was_training)
    return total / max(1, count), (correct / max(1, count)) if built.classifier else None


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def train(cfg: TrainConfig, *, registry: Registry | None = None, log: Callable[[str], None] = print) -> Result:
    """Run ``cfg``; returns the final figures (the same on every rank).  Raises :class:`TrainError` for a
    request that cannot run, the model's own ValueError/TypeError for arguments it rejects."""
    from torch.utils.data import DistributedSampler

    registry = registry if registry is not None else get_registry()
    world, rank, local_rank = _distributed()
    if cfg.batch_size % world:
        raise TrainError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by {world} processes")
    for option in ("epochs", "batch_size", "log_every"):
        if getattr(cfg, option) < 1:
            raise TrainError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(cfg, option)}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise TrainError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    device = _device(cfg.device, world, local_rank)
    if device.type == "cpu":
        torch.set_num_threads(_threads(cfg.threads))
    out = cfg.resume if cfg.resume is not None else cfg.out
    state: dict[str, Any] = {"step": 0}
    optimizer_state = None
    info = registry.info(cfg.name)
    if cfg.resume is not None:
        state, optimizer_state = read_checkpoint(cfg.resume / CHECKPOINT, cfg.name)
        cfg = resumed_config(cfg, info, state)
    cfg = replace(cfg, data=cfg.data or "digits")
    torch.manual_seed(cfg.seed)
    if info.kind == "model":  # the data's class count sizes the head: the data comes first
        data = load(cfg.data, info.input_kind, model_input_shape(cfg, info, registry))
        built = build(cfg, data.num_classes, registry)
    else:  # a trainer: the data has its encoder's shape (a backend is refused by build)
        built = build(cfg, None, registry)
        data = load(cfg.data, built.input_kind, built.shape)
        if info.takes_labels:  # its trained model's head sized to the data's classes
            torch.manual_seed(cfg.seed)
            built = build(cfg, data.num_classes, registry)
    if cfg.resume is not None:
        from safetensors.torch import load_file

        from vit_core.interop.saving import WEIGHTS_FILE, check_state

        weights = load_file(str(cfg.resume / CHECKPOINT / WEIGHTS_FILE))
        check_state(cfg.resume / CHECKPOINT / WEIGHTS_FILE, built.module, weights)
        built.module.load_state_dict(weights)
    module = built.module.to(device).train()
    params = sum(p.numel() for p in module.parameters())

    owns_group = world > 1 and not torch.distributed.is_initialized()
    if owns_group:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    model: nn.Module = module
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(module, device_ids=ids)

    sampler = DistributedSampler(data.train_y, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    loader = Batches(data.train_x, data.train_y, sampler, cfg.batch_size // world)
    steps_per_epoch = len(loader)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    warmup = max(1, round(cfg.warmup * total)) if cfg.warmup > 0 else 0

    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        for group in optimizer.param_groups:  # the command line's weight decay, not the checkpoint's
            group["weight_decay"] = cfg.weight_decay
    step = int(state["step"])
    if step >= total:
        raise TrainError(f"--resume: the checkpoint is at step {step}, the run has {total} steps; raise --epochs")

    main = rank == 0
    if main and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.resume is None:  # a new run in an old folder starts its metrics afresh
            (out / METRICS).unlink(missing_ok=True)
    metrics = Metrics(out / METRICS if main and out is not None else None)
    say = log if main else (lambda _: None)
    say(
        f"training {registry.key(built.info)} ({params:,} parameters) on {data.name}: {len(data.train_y)} train / "
        f"{len(data.test_y)} test, {data.num_classes} classes, sample {tuple(built.shape)}, {total} steps, "
        f"global batch {cfg.batch_size}, {world} process(es) on {device}"
        + (f", resuming at step {step}" if step else "")
    )
    update_average = getattr(module, "update_moving_average", None)
    start_time, images, last_loss = time.perf_counter(), 0, float("nan")
    loop_seconds = step_seconds = 0.0  # the loop (data, logging, bar included) and the bare steps within it
    history = []
    with _progress(cfg.progress and main) as bar:
        task = bar.add_task("train", total=total, completed=step, epoch=step // steps_per_epoch + 1, loss=0.0, ips=0.0)
        while step < total:
            epoch = step // steps_per_epoch
            sampler.set_epoch(epoch)
            skip = step - epoch * steps_per_epoch
            mark = time.perf_counter()
            for index, (x, y) in enumerate(loader):
                if index < skip:
                    continue
                if step >= total:
                    break
                torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout and masks: a resumed run draws alike
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, total, warmup, cfg.lr)
                begin = time.perf_counter()
                loss, _ = _call(built, model, x, y, cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip > 0:
                    nn.utils.clip_grad_norm_(trainable, cfg.clip)
                optimizer.step()
                if callable(update_average):
                    update_average()
                last_loss = loss.item()  # waits for the device: the bare step ends here
                step_seconds += time.perf_counter() - begin
                step += 1
                images += len(y) * world
                ips = images / max(1e-9, loop_seconds + time.perf_counter() - mark)
                bar.update(task, completed=step, epoch=epoch + 1, loss=last_loss, ips=ips)
                if step % cfg.log_every == 0 or step == total:
                    lr = optimizer.param_groups[0]["lr"]
                    metrics.write(split="train", step=step, epoch=epoch + 1, loss=last_loss, lr=lr, images_per_s=ips)
                now = time.perf_counter()
                loop_seconds, mark = loop_seconds + now - mark, now
            end_of_epoch = step % steps_per_epoch == 0 or step == total
            if end_of_epoch and main:
                test_loss, accuracy = evaluate(built, data, device, cfg.batch_size)
                record = {"split": "test", "step": step, "epoch": epoch + 1, "loss": test_loss}
                if accuracy is not None:
                    record["accuracy"] = accuracy
                record["seconds"] = time.perf_counter() - start_time
                record["images_per_s"] = images / max(1e-9, loop_seconds)
                record["loop_overhead"] = loop_seconds / step_seconds - 1 if step_seconds else None
                metrics.write(**record)
                history.append(record)
                if out is not None:
                    loop_state = {
                        "step": step, "epoch": epoch + 1, "seed": cfg.seed, "total_steps": total, "data": cfg.data,
                    }  # fmt: skip
                    save_checkpoint(out / CHECKPOINT, built, optimizer, loop_state)
    seconds = time.perf_counter() - start_time
    if owns_group:
        torch.distributed.barrier()  # rank 0 may still be writing: tearing gloo down under it aborts the process
        torch.distributed.destroy_process_group()
    final = history[-1] if history else {"loss": float("nan")}
    return Result(
        name=registry.key(built.info),
        params=params,
        steps=step,
        epochs=math.ceil(step / steps_per_epoch),
        seconds=seconds,
        train_loss=last_loss,
        test_loss=final["loss"],
        accuracy=final.get("accuracy"),
        images_per_s=images / max(1e-9, loop_seconds),
        loop_overhead=loop_seconds / step_seconds - 1 if step_seconds else float("nan"),
        out=out if main else None,
        data=data.name,
        world=world,
        history=history,
    )


def print_summary(console: Any, result: Result) -> None:
    """The final table of a run."""
    from rich.table import Table

    table = Table(title=f"{result.name} on {result.data}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("parameters", f"{result.params:,}"),
        ("steps", f"{result.steps} ({result.epochs} epochs, {result.world} process(es))"),
        ("time", f"{result.seconds:.1f} s"),
        ("images/s", f"{result.images_per_s:.0f} (training steps; evaluation and checkpoints excluded)"),
        ("loop overhead", f"{result.loop_overhead:.1%} over the bare steps (data, logging, progress bar)"),
        ("last train loss", f"{result.train_loss:.4f}"),
        ("test loss", f"{result.test_loss:.4f}"),
    ]
    if result.accuracy is not None:
        rows.append(("test accuracy", f"{result.accuracy:.4f}"))
    if result.out is not None:
        rows.append(("metrics", str(result.out / METRICS)))
        rows.append(("checkpoint", f"{result.out / CHECKPOINT}  (vit_core.load_model reads it)"))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
