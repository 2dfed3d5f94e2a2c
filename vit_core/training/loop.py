"""The training loop behind ``vit train``: any registered classifier, or a registered trainer around an encoder.

``train()`` is a list of steps, each from its own module: the options checked; the run's settings (``--resume``:
the checkpoint's) and the data; the model built (``--init``: started from a saved or pretrained model,
:mod:`~vit_core.training.build`); the optimizer over parameter groups (:mod:`~vit_core.training.optim`: no weight
decay on 1-D parameters and what the model declares, ``--layer-decay``), the schedule
(:mod:`~vit_core.training.schedule`), the precision (:mod:`~vit_core.training.precision`), the EMA
(:mod:`~vit_core.training.ema`), the process group and wrapper (:mod:`~vit_core.training.distributed`); then per
step :class:`~vit_core.training.step.TrainStep` (micro-batches, autocast, clipping), and per epoch the held-out
evaluation (the EMA's beside the model's) and the checkpoints (:mod:`~vit_core.training.checkpoint`).

Data (:mod:`~vit_core.training.data`): batches come from DataLoader workers as uint8 images, and are normalised,
mixed (Mixup / CutMix) and erased on the training device, with a generator seeded by the step, so a resumed run
draws alike.  Distributed: each rank reads its share of every global batch through a ``DistributedSampler``
(shards: its own shards); a single process reads the same sampler with one replica, so the global batches (and,
without dropout or augmentation, the weights) are the same.  Only rank 0 writes files and prints (under FSDP
every rank also evaluates and writes its checkpoint shards).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vit_core.models.base import MovingAverageTrainer, VisionModel
from vit_core.registry import ModelInfo, Registry, get_registry
from vit_core.training.batches import evaluate, loss_function, training_batch
from vit_core.training.build import (
    Built,
    build,
    init_overrides,
    load_init,
    model_input_shape,
    set_drop_path,
    start_from,
)
from vit_core.training.checkpoint import (
    BEST,
    CHECKPOINT,
    load_checkpoint_weights,
    read_checkpoint,
    read_ema_weights,
    restore_optimizer,
    resumed_config,
    save_checkpoint,
)
from vit_core.training.config import TrainConfig, TrainError
from vit_core.training.data.folders import DataSourceError
from vit_core.training.data.pipeline import Data, load
from vit_core.training.distributed import (
    check_strategy,
    cpu_threads,
    fast_float32_matmul,
    parallel,
    process_group,
    processes,
    select_device,
    shard,
)
from vit_core.training.ema import ModelEma, check_decay
from vit_core.training.layout import to_channels_last
from vit_core.training.optim import make_optimizer, parameter_groups
from vit_core.training.precision import Precision
from vit_core.training.report import BAD_IMAGES, METRICS, EpochLines, Metrics, Result, progress_bar
from vit_core.training.schedule import Schedule, peak_lr, warmup_steps
from vit_core.training.step import RunningLoss, TrainStep, micro_batches


def _check_options(cfg: TrainConfig, world: int) -> None:
    """Refuse option values no run can use, naming the option."""
    if cfg.batch_size % world:
        raise TrainError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by {world} processes")
    for option in ("epochs", "batch_size", "log_every"):
        if getattr(cfg, option) < 1:
            raise TrainError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(cfg, option)}")
    micro_batches(1, cfg.accum_steps)  # refuses a count that is no positive int
    if cfg.accum_steps > cfg.batch_size // world:
        raise TrainError(
            f"--accum-steps {cfg.accum_steps}: each process's share of --batch-size {cfg.batch_size} is "
            f"{cfg.batch_size // world} images, fewer than the micro-batches"
        )
    if cfg.ema is not None:
        check_decay(cfg.ema)
    if cfg.layer_decay is not None and not 0.0 < cfg.layer_decay <= 1.0:
        raise TrainError(f"--layer-decay must be in (0, 1] (the rate's factor per block), got {cfg.layer_decay}")
    if cfg.min_lr < 0:
        raise TrainError(f"--min-lr must be at least 0, got {cfg.min_lr}")
    if cfg.checkpoint_every is not None and cfg.checkpoint_every < 1:
        raise TrainError(f"--checkpoint-every must be at least 1 step, got {cfg.checkpoint_every}")
    if cfg.lr_base is not None and cfg.given is not None and "lr" in cfg.given:
        raise TrainError("--lr and --lr-base both set the peak learning rate; give one")
    check_strategy(cfg.strategy, world)
    if cfg.strategy == "fsdp" and cfg.ema is not None:
        raise TrainError("--ema with --strategy fsdp: the average of sharded weights is not supported; use ddp")


def _data_and_model(cfg: TrainConfig, info: ModelInfo, registry: Registry) -> tuple[Data, Built]:
    """The data and the model ``info`` (seeded by ``cfg.seed``): a classifier's head sized to the data's classes."""
    torch.manual_seed(cfg.seed)
    settings = cfg.data_settings()
    try:
        if info.kind == "model":  # the data's class count sizes the head: the data comes first
            data = load(settings, info.input_kind, model_input_shape(cfg, info, registry), seed=cfg.seed)
            return data, build(cfg, data.num_classes, registry)
        # a trainer: the data has its encoder's shape (a backend is refused by build)
        built = build(cfg, None, registry)
        data = load(settings, built.input_kind, built.shape, seed=cfg.seed)
    except DataSourceError as exc:
        raise TrainError(str(exc)) from None
    if info.takes_labels:  # its trained model's head sized to the data's classes
        torch.manual_seed(cfg.seed)
        built = build(cfg, data.num_classes, registry)
    return data, built


@dataclass
class _Start:
    """Where a run starts: step 0 of a new run (from ``--init`` or not) or a checkpoint (``--resume``)."""

    state: dict[str, Any]
    optimizer: dict[str, Any] | None = None
    init: nn.Module | None = None


def _freeze_outside_forward(model: nn.Module) -> None:
    """A classifier trained on its own loss: the parameters its ``forward`` never uses (a distillation token and
    head, declared as ``parameters_outside_forward``) would get no gradient, which DDP refuses at its second
    step; they are left out of training (``requires_grad`` off) and keep their values."""
    prefixes = model.parameters_outside_forward if isinstance(model, VisionModel) else ()
    for name, param in model.named_parameters():
        if prefixes and name.startswith(tuple(prefixes)):
            param.requires_grad_(False)


def _init_preprocessing(cfg: TrainConfig, loaded: nn.Module) -> dict[str, Any]:
    """The ``--init`` model's own preprocessing (its ``pretrained_cfg``: mean, std, resize filter, crop) for what
    the command line leaves unset: a pretrained model is fine-tuned on images fed as it was trained."""
    from vit_core.training.data.transforms import INTERPOLATIONS

    source = getattr(loaded, "pretrained_cfg", None) or {}
    found = {
        "mean": tuple(source["mean"]) if "mean" in source else None,
        "std": tuple(source["std"]) if "std" in source else None,
        "crop_pct": source.get("crop_pct"),
        "interpolation": source.get("interpolation") if source.get("interpolation") in INTERPOLATIONS else None,
    }
    return {key: value for key, value in found.items() if value is not None and getattr(cfg, key) is None}


def _settings(cfg: TrainConfig, info: ModelInfo, registry: Registry) -> tuple[TrainConfig, _Start]:
    """The run's settings: ``--resume``'s checkpoint fills in what the command line leaves out; ``--init``'s
    model gives the architecture (an explicit ``--set`` wins)."""
    if cfg.resume is not None:
        state, optimizer_state = read_checkpoint(cfg.resume / CHECKPOINT, cfg.name)
        return resumed_config(cfg, info, state), _Start(state, optimizer_state)
    if cfg.init is not None:
        loaded = load_init(cfg.init, info, registry)
        cfg = replace(
            cfg, overrides={**init_overrides(loaded, info), **cfg.overrides}, **_init_preprocessing(cfg, loaded)
        )
        return cfg, _Start({"step": 0}, None, loaded)
    return cfg, _Start({"step": 0})


def train(cfg: TrainConfig, *, registry: Registry | None = None, log: Callable[[str], None] = print) -> Result:
    """Run ``cfg``; returns the final figures (the same on every rank).  Raises :class:`TrainError` for a
    request that cannot run, the model's own ValueError/TypeError for arguments it rejects, and
    :class:`~vit_core.training.data.decode.BadImageError` (naming the file) for an unreadable image unless
    ``cfg.skip_bad_images``."""
    registry = registry if registry is not None else get_registry()
    place = processes()
    world = place.world
    info = registry.info(cfg.name)
    cfg, start = _settings(cfg, info, registry)
    cfg = replace(cfg, data=cfg.data or "digits")
    _check_options(cfg, world)
    device = select_device(cfg.device, world, place.local_rank)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.threads))
    fast_float32_matmul(device, cfg.tf32)
    precision = Precision.of(cfg.precision, device)
    out = cfg.resume if cfg.resume is not None else cfg.out
    data, built = _data_and_model(cfg, info, registry)
    notes = list(data.notes)
    if start.init is not None:
        changes = start_from(start.init, built.module, info)
        notes.append(f"starting from {cfg.init}" + (f" ({', '.join(changes)})" if changes else ""))
    if cfg.resume is not None:
        load_checkpoint_weights(cfg.resume / CHECKPOINT, built.module)
    if cfg.drop_path is not None:
        set_drop_path(built.module, cfg.drop_path)
    if built.classifier:
        built.module.pretrained_cfg = data.pretrained_cfg
        _freeze_outside_forward(built.module)
    module = built.module.to(device).train()
    channels_last = cfg.channels_last and built.input_kind == "image"  # batches of one tensor each
    if cfg.channels_last:
        to_channels_last(module)
    params = sum(p.numel() for p in module.parameters())
    pin = device.type == "cuda"
    per_rank = cfg.batch_size // world
    steps_per_epoch = data.batches_per_epoch(cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    schedule = Schedule(
        total,
        warmup_steps(total, steps_per_epoch, cfg.warmup, cfg.warmup_epochs),
        peak_lr(cfg.lr, cfg.lr_base, cfg.batch_size),
        cfg.min_lr,
    )
    state = start.state
    step = int(state["step"])
    if step >= total:
        raise TrainError(f"--resume: the checkpoint is at step {step}, the run has {total} steps; raise --epochs")

    with process_group(world, device):
        sharded = cfg.strategy == "fsdp" and world > 1
        if sharded:  # before the optimizer: sharding makes new parameters
            shard(module)
        groups = parameter_groups(module, cfg.weight_decay, cfg.layer_decay)
        trainable = [p for group in groups for p in group["params"]]
        optimizer = make_optimizer(cfg.opt, groups, schedule.lr, cfg.momentum)
        ema = ModelEma(module, cfg.ema, cfg.ema_warmup) if cfg.ema is not None else None
        if cfg.resume is not None:
            restore_optimizer(cfg.resume / CHECKPOINT, module, optimizer, start.optimizer)
            for group, ours in zip(optimizer.param_groups, groups):  # the run's weight decay, not the checkpoint's
                group["weight_decay"] = ours["weight_decay"]
            precision.load_state_dict(state.get("scaler", {}))
            if ema is not None:
                ema.restore(read_ema_weights(cfg.resume / CHECKPOINT), state.get("ema", {}))
        model = torch.compile(module) if cfg.compile else module
        model = parallel(model, world, device, cfg.strategy)
        train_step = TrainStep(model, optimizer, precision, trainable, clip=cfg.clip, accum_steps=cfg.accum_steps)
        loss_fn = loss_function(built, model, data)

        main = place.main
        saves = main or sharded  # evaluates and checkpoints: rank 0, or under FSDP every rank (collectives)
        if main and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if cfg.resume is None:  # a new run in an old folder starts its metrics afresh
                (out / METRICS).unlink(missing_ok=True)
                (out / BAD_IMAGES).unlink(missing_ok=True)
        metrics = Metrics(out / METRICS if main and out is not None else None)
        say = log if main else (lambda _: None)
        for note in notes:
            say(f"note: {note}")
        say(
            f"training {registry.key(built.info)} ({params:,} parameters) on {data.name}: {data.train_size} "
            f"train / {data.val_size} held out, {data.num_classes} classes, sample {tuple(built.shape)}, {total} "
            f"steps, global batch {cfg.batch_size}, {world} process(es) on {device}, {data.workers} loader "
            f"worker(s) per process" + (f", resuming at step {step}" if step else "")
        )
        update_average = module.update_moving_average if isinstance(module, MovingAverageTrainer) else None
        run_state = {
            "seed": cfg.seed, "total_steps": total, "init": state.get("init", cfg.init),
            **{key: getattr(cfg, key) for key in TrainConfig.DATA_FIELDS},
            "run": {key: getattr(cfg, key) for key in TrainConfig.RUN_FIELDS},
        }  # fmt: skip
        best, best_model = state.get("best"), state.get("best_model")
        start_time, images = time.perf_counter(), 0
        loop_seconds = step_seconds = 0.0  # the loop (data, logging, bar included) and the bare steps within it
        history: list[dict[str, Any]] = []
        skipped: list[str] = []
        running = RunningLoss(device)
        interactive = cfg.progress and main and sys.stdout.isatty()
        lines = EpochLines(say if main and not interactive else None, total, cfg.log_every)

        def checkpoint(folder: Path, chosen: nn.Module | None = None) -> None:
            running.read()  # a non-finite loss since the last read stops the run before anything is written
            loop_state = {
                "step": step, "epoch": math.ceil(step / steps_per_epoch), **run_state,
                "best": best, "best_model": best_model,
                "scaler": precision.state_dict(), "ema": ema.state() if ema is not None else None,
            }  # fmt: skip
            save_checkpoint(
                folder, built, optimizer, loop_state, model=chosen, ema=ema.module if ema is not None else None
            )

        with progress_bar(interactive) as bar:
            epoch = step // steps_per_epoch + 1
            task = bar.add_task("train", total=total, completed=step, epoch=epoch, loss=0.0, ips=0.0)
            while step < total:
                epoch = step // steps_per_epoch
                skip = step - epoch * steps_per_epoch
                mark, first = time.perf_counter(), step
                for x, y, bad in data.epoch_batches(epoch, skip, per_rank, place.rank, world, pin):
                    if step >= total:
                        break
                    skipped += data.unreadable(bad)
                    seed = cfg.seed * 1_000_003 + step
                    torch.manual_seed(seed)  # dropout and masks: a resumed run draws alike
                    generator = torch.Generator().manual_seed(seed)  # Mixup, CutMix, erasing
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    lr = schedule.at(step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr * group["lr_scale"]
                    begin = time.perf_counter()
                    inputs, targets = training_batch(built, data, x, y, generator, channels_last=channels_last)
                    loss = train_step(inputs, targets, loss_fn)
                    if ema is not None:
                        ema.update(module)
                    if update_average is not None:
                        update_average()
                    step_seconds += time.perf_counter() - begin
                    step += 1
                    running.add(loss, step)
                    images += len(y) * world
                    ips = images / max(1e-9, loop_seconds + time.perf_counter() - mark)
                    if step % cfg.log_every == 0 or step == total:
                        last_loss = running.read()  # waits for the device; raises on a non-finite loss
                        metrics.write(
                            split="train", step=step, epoch=epoch + 1, loss=last_loss, lr=lr, images_per_s=ips
                        )
                        lines.step(step, epoch + 1, last_loss, ips, time.perf_counter() - start_time)
                    bar.update(task, completed=step, epoch=epoch + 1, loss=running.last, ips=ips)
                    end_of_epoch = step % steps_per_epoch == 0 or step == total
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not end_of_epoch and saves and out:
                        checkpoint(out / CHECKPOINT)
                    now = time.perf_counter()
                    loop_seconds, mark = loop_seconds + now - mark, now
                if step == first:
                    raise TrainError(f"--data {data.name}: epoch {epoch + 1} gave no batch (the data is empty)")
                end_of_epoch = step % steps_per_epoch == 0 or step == total
                if end_of_epoch and saves:
                    running.read()
                    test_loss, accuracy, bad_held_out = evaluate(
                        built, data, device, per_rank, channels_last=channels_last, precision=precision
                    )
                    skipped += bad_held_out
                    record = {"split": "test", "step": step, "epoch": epoch + 1, "loss": test_loss}
                    if accuracy is not None:
                        record["accuracy"] = accuracy
                    scores = {"model": accuracy if accuracy is not None else -test_loss}
                    if ema is not None:
                        ema_loss, ema_accuracy, _ = evaluate(
                            built, data, device, per_rank, ema.module, channels_last=channels_last, precision=precision
                        )
                        record["ema_loss"] = ema_loss
                        if ema_accuracy is not None:
                            record["ema_accuracy"] = ema_accuracy
                        scores["ema"] = ema_accuracy if ema_accuracy is not None else -ema_loss
                    record["seconds"] = time.perf_counter() - start_time
                    record["images_per_s"] = images / max(1e-9, loop_seconds)
                    record["loop_overhead"] = loop_seconds / step_seconds - 1 if step_seconds else None
                    metrics.write(**record)
                    history.append(record)
                    lines.epoch(record, total)
                    if interactive:
                        shown = f"accuracy {accuracy:.4f}" if accuracy is not None else f"loss {test_loss:.4f}"
                        if "ema_accuracy" in record:
                            shown += f", EMA {record['ema_accuracy']:.4f}"
                        bar.console.print(f"epoch {epoch + 1}: held-out {shown}")
                    which = max(scores, key=lambda k: scores[k])
                    improved = best is None or scores[which] > best
                    if improved:
                        best, best_model = scores[which], which
                    if out is not None:
                        checkpoint(out / CHECKPOINT)
                        if improved:
                            checkpoint(out / BEST, ema.module if which == "ema" and ema is not None else None)
                        if skipped and main:
                            _write_skipped(out / BAD_IMAGES, skipped)
        last_loss = running.read()
        seconds = time.perf_counter() - start_time
    if skipped:
        say(f"skipped {len(set(skipped))} unreadable image(s)" + (f", listed in {out / BAD_IMAGES}" if out else ""))
    if best_model == "ema":
        say(f"the best checkpoint ({out / BEST if out else 'best'}) holds the EMA weights")
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
        skipped_images=len(set(skipped)),
    )


def _write_skipped(file: Path, paths: list[str]) -> None:
    """The skipped files, one per line, sorted (replaced whole, never half-written)."""
    partial = file.with_name(file.name + ".partial")
    partial.write_text("".join(f"{path}\n" for path in sorted(set(paths))))
    partial.replace(file)
