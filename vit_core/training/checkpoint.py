"""A run's checkpoint: the model through :func:`vit_core.save_model` (``config.json`` + ``model.safetensors``),
the optimizer's tensors (``optimizer.safetensors``), the EMA weights (``ema.safetensors``, with ``--ema``) and
the loop's state (``state.json``: step, settings, the gradient scaler's and the EMA's counters) beside it; no
pickle anywhere.  Each folder is written beside its name and swapped in whole, so a reader (``--resume``,
``vit predict``) never sees a half-written one, even after SIGKILL.  ``--resume`` reads it back, with the
model settings, data and engine settings it was trained with.

Under FSDP (``--strategy fsdp``) every rank writes its shards of the model and optimizer through
``torch.distributed.checkpoint`` (``sharded/``: a ``.distcp`` file per rank and the ``.metadata``), and rank 0
the whole model gathered from them (``config.json`` + ``model.safetensors``, read in one process by
:func:`vit_core.load_model` and ``vit predict``); ``--resume`` loads the shards back, on any number of processes
(one included: ``--strategy ddp``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vit_core.registry import ModelInfo, get_registry
from vit_core.training.build import Built, trained_component
from vit_core.training.config import TrainConfig, TrainError
from vit_core.training.distributed import is_sharded

CHECKPOINT = "checkpoint"
"""The last checkpoint's folder inside a run's ``--out`` folder (``--resume`` continues from it)."""
BEST = "best"
"""The checkpoint of the best held-out accuracy (loss for trainers), beside the last."""
OPTIMIZER_FILE = "optimizer.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.json"
SHARDED = "sharded"
"""The folder of a checkpoint's ``torch.distributed.checkpoint`` shards (model and optimizer), under FSDP."""


def save_checkpoint(
    folder: Path,
    built: Built,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    model: torch.nn.Module | None = None,
    ema: torch.nn.Module | None = None,
) -> Path:
    """The model (``model``, default ``built.module``; the best checkpoint may hold the EMA's), the optimizer's
    tensors, the EMA weights ``ema`` (when given) and the loop's ``state`` (JSON) in ``folder``, written beside
    it and swapped into place whole (:func:`~vit_core.interop.saving.replaced_folder`).  A sharded (FSDP)
    ``built.module`` is saved by every rank together (:func:`save_sharded_checkpoint`)."""
    from safetensors.torch import save_file

    from vit_core.interop.saving import replaced_folder, save_model, state_tensors

    if is_sharded(built.module):
        return save_sharded_checkpoint(folder, built, optimizer, state)
    with replaced_folder(folder) as partial:
        save_model(
            model if model is not None else built.module, partial, name=built.info.name, config=built.save_config
        )
        opt = optimizer.state_dict()
        tensors = {
            f"{index}.{key}": value.detach().contiguous().cpu()
            for index, entries in opt["state"].items()
            for key, value in entries.items()
            if isinstance(value, torch.Tensor)
        }
        save_file(tensors, str(partial / OPTIMIZER_FILE))
        if ema is not None:
            save_file(state_tensors(ema), str(partial / EMA_FILE))
        groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
        (partial / STATE_FILE).write_text(json.dumps({**state, "param_groups": groups}, indent=2) + "\n")
    return folder


def save_sharded_checkpoint(
    folder: Path, built: Built, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> Path:
    """The checkpoint of an FSDP-sharded ``built.module``, called by every rank at once (collectives): each
    rank's shards of the model and ``optimizer`` in ``SHARDED/`` (``torch.distributed.checkpoint``), the whole
    model gathered onto rank 0 and saved by it (``config.json``, ``model.safetensors``) with the loop's
    ``state``; rank 0's folder is swapped into place once every rank has written.  (No EMA: ``--ema`` is
    refused with FSDP.)"""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    from vit_core.interop.saving import replaced_folder, save_model

    module = built.module
    whole = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    model_state, optimizer_state = get_state_dict(module, optimizer)
    shards = {"model": model_state, "optimizer": optimizer_state}
    if dist.get_rank() != 0:
        where: list[Any] = [None]
        dist.broadcast_object_list(where, src=0)  # rank 0's partial folder
        dcp.save(shards, checkpoint_id=Path(where[0]) / SHARDED)
        return folder
    with replaced_folder(folder) as partial:
        save_model(module, partial, name=built.info.name, config=built.save_config, weights=whole)
        dist.broadcast_object_list([str(partial)], src=0)
        # dcp.save returns once every rank's shards and the metadata are written: the folder is then whole
        dcp.save(shards, checkpoint_id=partial / SHARDED)
        (partial / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return folder


def restore_optimizer(
    folder: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: Mapping[str, Any] | None
) -> None:
    """Load the optimizer state of the checkpoint in ``folder`` into ``optimizer`` (over ``module``'s
    parameters): its ``torch.distributed.checkpoint`` shards with the model's (an FSDP run's checkpoint, into a
    sharded or a whole ``module``), else ``saved`` (:func:`read_checkpoint`'s)."""
    if (folder / SHARDED).is_dir():
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optimizer_state = get_state_dict(module, optimizer)
        shards = {"model": model_state, "optimizer": optimizer_state}
        with warnings.catch_warnings():  # one process reading the shards (a resume without torchrun) is intended
            warnings.filterwarnings("ignore", message="torch.distributed is .* single process")
            dcp.load(shards, checkpoint_id=folder / SHARDED)
        set_state_dict(module, optimizer, model_state_dict=shards["model"], optim_state_dict=shards["optimizer"])
        return
    if is_sharded(module):
        raise TrainError(
            f"--resume {folder.parent} --strategy fsdp: the checkpoint was written without FSDP (no {SHARDED}/ "
            "folder); resume it with --strategy ddp"
        )
    if saved is None:
        raise TrainError(f"--resume {folder.parent}: the checkpoint has no optimizer state ({folder / OPTIMIZER_FILE})")
    optimizer.load_state_dict(dict(saved))


def read_ema_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The EMA weights saved in ``folder`` (a run trained with ``--ema``)."""
    from safetensors.torch import load_file

    if not (folder / EMA_FILE).is_file():
        raise TrainError(f"--resume {folder.parent}: the run has --ema but {folder / EMA_FILE} is missing")
    return load_file(str(folder / EMA_FILE))


def read_checkpoint(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The loop state and optimizer state dict saved in ``folder``, after checking they belong to ``name``
    (no optimizer state dict for an FSDP run's checkpoint: :func:`restore_optimizer` reads its shards)."""
    from safetensors.torch import load_file

    from vit_core.interop.saving import CONFIG_FILE

    if not (folder / STATE_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise TrainError(f"--resume {folder.parent}: no checkpoint in it (expected {folder}/{STATE_FILE})")
    saved = json.loads((folder / CONFIG_FILE).read_text()).get("model")
    registry = get_registry()
    if not registry.saved_as(saved, name):
        raise TrainError(f"--resume {folder.parent}: the checkpoint is of model {saved!r}, not {name!r}")
    state = json.loads((folder / STATE_FILE).read_text())
    if (folder / SHARDED).is_dir():
        return state, None  # the optimizer is in the shards (restore_optimizer)
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, _, entry = key.partition(".")
        per_param.setdefault(int(index), {})[entry] = value
    return state, {"state": per_param, "param_groups": state.pop("param_groups")}


def load_checkpoint_weights(folder: Path, module: torch.nn.Module) -> None:
    """Load the model weights saved in ``folder`` into ``module``, after checking every tensor's name and shape."""
    from safetensors.torch import load_file

    from vit_core.interop.saving import WEIGHTS_FILE, check_state

    weights = load_file(str(folder / WEIGHTS_FILE))
    check_state(folder / WEIGHTS_FILE, module, weights)
    module.load_state_dict(weights)


def checkpoint_settings(folder: Path, info: ModelInfo) -> tuple[str | None, dict[str, Any]]:
    """The ``--encoder`` and ``--set`` pairs that rebuild the model saved in ``folder`` (its ``config.json``):
    a model's constructor arguments; a trainer's own, and ``component.key`` for the models inside it."""
    from vit_core.interop.saving import CONFIG_FILE, MODEL_KEY, decode_value

    registry = get_registry()
    config = json.loads((folder / CONFIG_FILE).read_text())["config"]
    encoder, overrides = None, {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {MODEL_KEY}:
            record = value[MODEL_KEY]
            if info.kind == "trainer" and key == trained_component(info):
                encoder = record["model"]
            overrides.update(
                {f"{key}.{k}": decode_value(v, f"{key}.{k}", registry) for k, v in record["config"].items()}
            )
        else:
            overrides[key] = decode_value(value, key, registry)
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
    restored = {key: state[key] for key in TrainConfig.DATA_FIELDS if getattr(cfg, key) is None and key in state}
    given = cfg.given_fields()
    run = state.get("run", {})
    restored.update({key: run[key] for key in TrainConfig.RUN_FIELDS if key in run and key not in given})
    return replace(cfg, encoder=encoder or cfg.encoder, overrides={**saved, **cfg.overrides}, **restored)
