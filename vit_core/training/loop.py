"""The training loop behind ``vit train``: any registered classifier, or a registered trainer around an encoder.

AdamW, linear warm-up then cosine decay (set per step, so a resumed run continues the same curve),
gradient clipping, optional label smoothing, a seed, held-out evaluation (accuracy for classifiers,
loss for trainers), metrics as JSON lines (:mod:`~vit_core.training.report`) and a checkpoint after
each epoch (:mod:`~vit_core.training.checkpoint`).

Distributed (:mod:`~vit_core.training.distributed`): each rank reads its shard of every global batch
through a ``DistributedSampler``; a single process reads the same sampler with one replica, so the
global batches (and, without dropout, the weights) are the same in both.  Only rank 0 writes files
and prints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vit_core.models.base import MovingAverageTrainer
from vit_core.registry import ModelInfo, Registry, get_registry
from vit_core.training.build import Built, build, model_input_shape
from vit_core.training.checkpoint import (
    CHECKPOINT,
    load_checkpoint_weights,
    read_checkpoint,
    resumed_config,
    save_checkpoint,
)
from vit_core.training.config import TrainConfig, TrainError
from vit_core.training.data import Dataset, load
from vit_core.training.distributed import cpu_threads, parallel, process_group, processes, select_device
from vit_core.training.report import METRICS, Metrics, Result, progress_bar


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up over ``warmup`` steps to ``base``, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Batches:
    """The sampler's indices of an epoch in consecutive batches, each gathered from the tensors in one
    indexing (what a ``DataLoader`` over a ``TensorDataset`` yields, without its per-sample collation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, sampler: Any, batch_size: int) -> None:
        self.x, self.y, self.sampler, self.batch_size = x, y, sampler, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        for batch in order.split(self.batch_size):
            yield self.x[batch], self.y[batch]


def _call(built: Built, model: nn.Module, x: Any, y: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, Any]:
    """The loss of one batch, and a classifier's logits (None for a trainer)."""
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


def _check_options(cfg: TrainConfig, world: int) -> None:
    """Refuse option values no run can use, naming the option."""
    if cfg.batch_size % world:
        raise TrainError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by {world} processes")
    for option in ("epochs", "batch_size", "log_every"):
        if getattr(cfg, option) < 1:
            raise TrainError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(cfg, option)}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise TrainError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")


def _data_and_model(cfg: TrainConfig, info: ModelInfo, registry: Registry) -> tuple[Dataset, Built]:
    """The data and the model ``info`` (seeded by ``cfg.seed``): a classifier's head sized to the data's classes."""
    torch.manual_seed(cfg.seed)
    if info.kind == "model":  # the data's class count sizes the head: the data comes first
        data = load(cfg.data, info.input_kind, model_input_shape(cfg, info, registry))
        return data, build(cfg, data.num_classes, registry)
    # a trainer: the data has its encoder's shape (a backend is refused by build)
    built = build(cfg, None, registry)
    data = load(cfg.data, built.input_kind, built.shape)
    if info.takes_labels:  # its trained model's head sized to the data's classes
        torch.manual_seed(cfg.seed)
        built = build(cfg, data.num_classes, registry)
    return data, built


def train(cfg: TrainConfig, *, registry: Registry | None = None, log: Callable[[str], None] = print) -> Result:
    """Run ``cfg``; returns the final figures (the same on every rank).  Raises :class:`TrainError` for a
    request that cannot run, the model's own ValueError/TypeError for arguments it rejects."""
    from torch.utils.data import DistributedSampler

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
    module = built.module.to(device).train()
    params = sum(p.numel() for p in module.parameters())

    with process_group(world, device):
        model = parallel(module, world, device)
        sampler = DistributedSampler(data.train_y, num_replicas=world, rank=place.rank, shuffle=True, seed=cfg.seed)
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

        main = place.main
        if main and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if cfg.resume is None:  # a new run in an old folder starts its metrics afresh
                (out / METRICS).unlink(missing_ok=True)
        metrics = Metrics(out / METRICS if main and out is not None else None)
        say = log if main else (lambda _: None)
        say(
            f"training {registry.key(built.info)} ({params:,} parameters) on {data.name}: {len(data.train_y)} "
            f"train / {len(data.test_y)} test, {data.num_classes} classes, sample {tuple(built.shape)}, {total} "
            f"steps, global batch {cfg.batch_size}, {world} process(es) on {device}"
            + (f", resuming at step {step}" if step else "")
        )
        update_average = module.update_moving_average if isinstance(module, MovingAverageTrainer) else None
        start_time, images, last_loss = time.perf_counter(), 0, float("nan")
        loop_seconds = step_seconds = 0.0  # the loop (data, logging, bar included) and the bare steps within it
        history = []
        with progress_bar(cfg.progress and main) as bar:
            epoch = step // steps_per_epoch + 1
            task = bar.add_task("train", total=total, completed=step, epoch=epoch, loss=0.0, ips=0.0)
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
                    if update_average is not None:
                        update_average()
                    last_loss = loss.item()  # waits for the device: the bare step ends here
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
                            "step": step, "epoch": epoch + 1, "seed": cfg.seed, "total_steps": total,
                            "data": cfg.data,
                        }  # fmt: skip
                        save_checkpoint(out / CHECKPOINT, built, optimizer, loop_state)
        seconds = time.perf_counter() - start_time
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
