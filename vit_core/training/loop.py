"""The training loop behind ``vit train``: any registered classifier, or a registered trainer around an encoder.

AdamW, linear warm-up then cosine decay (set per step, so a resumed run continues the same curve),
gradient clipping, a seed, held-out evaluation after each epoch (accuracy for classifiers, loss for trainers),
metrics as JSON lines (:mod:`~vit_core.training.report`) and checkpoints (:mod:`~vit_core.training.checkpoint`):
the last after each epoch and the best by held-out accuracy (loss for trainers) beside it.

Data (:mod:`~vit_core.training.data`): batches come from DataLoader workers as uint8 images, and are normalised,
mixed (Mixup / CutMix) and erased on the training device, with a generator seeded by the step, so a resumed run
draws alike.  Distributed (:mod:`~vit_core.training.distributed`): each rank reads its share of every global batch
through a ``DistributedSampler`` (shards: its own shards); a single process reads the same sampler with one
replica, so the global batches (and, without dropout or augmentation, the weights) are the same.  Only rank 0
writes files and prints.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.models.base import MovingAverageTrainer
from vit_core.registry import ModelInfo, Registry, get_registry
from vit_core.training.build import Built, build, model_input_shape
from vit_core.training.checkpoint import (
    BEST,
    CHECKPOINT,
    load_checkpoint_weights,
    read_checkpoint,
    resumed_config,
    save_checkpoint,
)
from vit_core.training.config import TrainConfig, TrainError
from vit_core.training.data.folders import DataSourceError
from vit_core.training.data.pipeline import Data, load
from vit_core.training.distributed import cpu_threads, parallel, process_group, processes, select_device
from vit_core.training.report import BAD_IMAGES, METRICS, EpochLines, Metrics, Result, progress_bar


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up over ``warmup`` steps to ``base``, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _inputs(built: Built, x: Tensor) -> Any:
    """A batch as the model takes it: a list of images for image-list models (NaViT), else the tensor."""
    return list(x) if built.input_kind == "image-list" else x


def _loss(built: Built, model: nn.Module, data: Data, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
    """The training loss of one uint8 batch: a classifier's (soft-target) cross-entropy after the batch steps,
    or a trainer's own loss on the normalised images."""
    if built.classifier:
        x, targets = data.steps.training(x, y, generator)
        return data.steps.loss(model(_inputs(built, x)), targets)
    x = _inputs(built, data.steps.inputs(x))
    return model(x, y) if built.info.takes_labels else model(x)


@torch.no_grad()
def evaluate(built: Built, data: Data, device: torch.device, batch_size: int) -> tuple[float, float | None, list]:
    """Held-out mean loss, accuracy for a classifier, and the files skipped (the model in eval mode, put back)."""
    module = built.module
    was_training = module.training
    module.eval()
    total, correct, count, skipped = 0.0, 0, 0, []
    for images, labels, bad in data.val_batches(batch_size, pin_memory=device.type == "cuda"):
        skipped += data.unreadable(bad)
        if not len(labels):
            continue
        x, y = data.steps.inputs(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True)
        if built.classifier:
            logits = module(_inputs(built, x))
            loss = torch.nn.functional.cross_entropy(logits, y)
            correct += int((logits.argmax(-1) == y).sum())
        else:
            loss = module(_inputs(built, x), y) if built.info.takes_labels else module(_inputs(built, x))
        total += float(loss) * len(y)
        count += len(y)
    module.train(was_training)
    return total / max(1, count), (correct / max(1, count)) if built.classifier else None, skipped


def _check_options(cfg: TrainConfig, world: int) -> None:
    """Refuse option values no run can use, naming the option."""
    if cfg.batch_size % world:
        raise TrainError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by {world} processes")
    for option in ("epochs", "batch_size", "log_every"):
        if getattr(cfg, option) < 1:
            raise TrainError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(cfg, option)}")


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


def train(cfg: TrainConfig, *, registry: Registry | None = None, log: Callable[[str], None] = print) -> Result:
    """Run ``cfg``; returns the final figures (the same on every rank).  Raises :class:`TrainError` for a
    request that cannot run, the model's own ValueError/TypeError for arguments it rejects, and
    :class:`~vit_core.training.data.decode.BadImageError` (naming the file) for an unreadable image unless
    ``cfg.skip_bad_images``."""
    registry = registry if registry is not None else get_registry()
    place = processes()
    world = place.world
    _check_options(cfg, world)
    device = select_device(cfg.device, world, place.local_rank)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.threads))
    out = cfg.resume if cfg.resume is not None else cfg.out
    state: dict[str, Any] = {"step": 0}
    optimizer_state = None
    info = registry.info(cfg.name)
    if cfg.resume is not None:
        state, optimizer_state = read_checkpoint(cfg.resume / CHECKPOINT, cfg.name)
        cfg = resumed_config(cfg, info, state)
    cfg = replace(cfg, data=cfg.data or "digits")
    data, built = _data_and_model(cfg, info, registry)
    if cfg.resume is not None:
        load_checkpoint_weights(cfg.resume / CHECKPOINT, built.module)
    if built.classifier:
        built.module.pretrained_cfg = data.pretrained_cfg
    module = built.module.to(device).train()
    params = sum(p.numel() for p in module.parameters())
    pin = device.type == "cuda"

    with process_group(world, device):
        model = parallel(module, world, device)
        per_rank = cfg.batch_size // world
        steps_per_epoch = data.batches_per_epoch(cfg.batch_size)
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

        main = place.main
        if main and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if cfg.resume is None:  # a new run in an old folder starts its metrics afresh
                (out / METRICS).unlink(missing_ok=True)
                (out / BAD_IMAGES).unlink(missing_ok=True)
        metrics = Metrics(out / METRICS if main and out is not None else None)
        say = log if main else (lambda _: None)
        for note in data.notes:
            say(f"note: {note}")
        say(
            f"training {registry.key(built.info)} ({params:,} parameters) on {data.name}: {data.train_size} "
            f"train / {data.val_size} held out, {data.num_classes} classes, sample {tuple(built.shape)}, {total} "
            f"steps, global batch {cfg.batch_size}, {world} process(es) on {device}, {data.workers} loader "
            f"worker(s) per process" + (f", resuming at step {step}" if step else "")
        )
        update_average = module.update_moving_average if isinstance(module, MovingAverageTrainer) else None
        data_state = {key: getattr(cfg, key) for key in TrainConfig.DATA_FIELDS}
        best = state.get("best")
        start_time, images, last_loss = time.perf_counter(), 0, float("nan")
        loop_seconds = step_seconds = 0.0  # the loop (data, logging, bar included) and the bare steps within it
        history: list[dict[str, Any]] = []
        skipped: list[str] = []
        interactive = cfg.progress and main and sys.stdout.isatty()
        lines = EpochLines(say if main and not interactive else None, total, cfg.log_every)
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
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at(step, total, warmup, cfg.lr)
                    begin = time.perf_counter()
                    loss = _loss(built, model, data, x, y, generator)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.clip > 0:
                        nn.utils.clip_grad_norm_(trainable, cfg.clip)
                    optimizer.step()
                    if update_average is not None:
                        update_average()
                    last_loss = loss.item()  # waits for the device: the bare step ends here
                    if not math.isfinite(last_loss):
                        raise TrainError(
                            f"the loss is {last_loss} at step {step + 1}; the last good checkpoint is kept "
                            f"(lower --lr, raise --warmup, or check the data)"
                        )
                    step_seconds += time.perf_counter() - begin
                    step += 1
                    images += len(y) * world
                    ips = images / max(1e-9, loop_seconds + time.perf_counter() - mark)
                    bar.update(task, completed=step, epoch=epoch + 1, loss=last_loss, ips=ips)
                    if step % cfg.log_every == 0 or step == total:
                        lr = optimizer.param_groups[0]["lr"]
                        metrics.write(
                            split="train", step=step, epoch=epoch + 1, loss=last_loss, lr=lr, images_per_s=ips
                        )
                        lines.step(step, epoch + 1, last_loss, ips, time.perf_counter() - start_time)
                    now = time.perf_counter()
                    loop_seconds, mark = loop_seconds + now - mark, now
                if step == first:
                    raise TrainError(f"--data {data.name}: epoch {epoch + 1} gave no batch (the data is empty)")
                end_of_epoch = step % steps_per_epoch == 0 or step == total
                if end_of_epoch and main:
                    test_loss, accuracy, bad_held_out = evaluate(built, data, device, per_rank)
                    skipped += bad_held_out
                    record = {"split": "test", "step": step, "epoch": epoch + 1, "loss": test_loss}
                    if accuracy is not None:
                        record["accuracy"] = accuracy
                    record["seconds"] = time.perf_counter() - start_time
                    record["images_per_s"] = images / max(1e-9, loop_seconds)
                    record["loop_overhead"] = loop_seconds / step_seconds - 1 if step_seconds else None
                    metrics.write(**record)
                    history.append(record)
                    lines.epoch(record, total)
                    if interactive:
                        shown = f"accuracy {accuracy:.4f}" if accuracy is not None else f"loss {test_loss:.4f}"
                        bar.console.print(f"epoch {epoch + 1}: held-out {shown}")
                    score = accuracy if accuracy is not None else -test_loss
                    improved = best is None or score > best
                    best = score if improved else best
                    if out is not None:
                        loop_state = {
                            "step": step, "epoch": epoch + 1, "seed": cfg.seed, "total_steps": total,
                            **data_state, "best": best,
                        }  # fmt: skip
                        save_checkpoint(out / CHECKPOINT, built, optimizer, loop_state)
                        if improved:
                            save_checkpoint(out / BEST, built, optimizer, loop_state)
                        if skipped:
                            _write_skipped(out / BAD_IMAGES, skipped)
        seconds = time.perf_counter() - start_time
    if skipped:
        say(f"skipped {len(set(skipped))} unreadable image(s)" + (f", listed in {out / BAD_IMAGES}" if out else ""))
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
