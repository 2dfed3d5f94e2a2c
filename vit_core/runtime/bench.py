"""``vit bench``: registered models side by side at their default (or ``--set``) configuration.

Each model is built once; its inference call (no grad) and training step (loss, backward, AdamW step)
are timed interleaved with every other model's in one process (:func:`vit_core.runtime.timing.interleaved`,
the benchmarks' harness: rounds A B C A B C, busy rounds discarded), so that drifts of a shared
machine hit every row alike.  FLOPs are one forward pass per sample (``torch.utils.flop_counter``),
peak memory the increase during the first two training steps (optimizer state included) in a fresh
process per model: the resident set on CPU, with glibc's mmap threshold pinned so that freed tensors go
back to the system (in the timing process the allocator keeps what earlier rounds freed, and the
increase reads 0), allocated memory on CUDA.  On CPU the figures depend on the intra-op thread count
(``threads``; ``vit bench`` passes ``--threads``, default as ``vit train``'s), recorded in every row.
The table is printed by :mod:`vit_core.cli.bench`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vit_core.registry import Registry, get_registry
from vit_core.runtime.allocator import pinned_threshold_env
from vit_core.runtime.measure import count_flops, count_parameters
from vit_core.runtime.timing import interleaved, peak_increase

COLUMNS = (
    "model",
    "kind",
    "params",
    "flops",
    "infer_images_per_s",
    "train_images_per_s",
    "peak_train_memory",
    "threads",
)
"""The fields of a :class:`BenchRow` (``vit bench --json``'s keys)."""


@dataclass(frozen=True)
class BenchRow:
    """One model's figures (``flops`` None where counting fails; ``threads``: the intra-op CPU threads timed)."""

    model: str
    kind: str
    params: int
    flops: int | None
    infer_images_per_s: float
    train_images_per_s: float
    peak_train_memory: int
    threads: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _loss(kind: str, output: Any, num_classes: int | None) -> torch.Tensor:
    """Trainers return their loss; a classifier gets cross-entropy on fixed labels, anything else a sum."""
    if kind == "trainer":
        return output
    if isinstance(num_classes, int) and num_classes > 0 and output.ndim == 2 and output.shape[-1] == num_classes:
        labels = torch.arange(output.shape[0], device=output.device) % num_classes
        return F.cross_entropy(output.float(), labels)
    return output.float().sum()


def timed_calls(model: nn.Module, args: tuple, kind: str, device: torch.device) -> tuple[Callable, Callable]:
    """The two calls ``vit bench`` times for ``model`` on ``args``: inference (no grad, eval mode; a trainer in
    train mode) and a training step (loss, backward, AdamW step), each waiting for ``device`` to finish."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    num_classes = getattr(model, "num_classes", None)

    def infer() -> None:  # a model in eval mode (no dropout, running norm statistics); a trainer as it trains
        model.train(kind == "trainer")
        with torch.no_grad():
            model(*args)
        sync()

    def step() -> None:
        model.train()
        loss = _loss(kind, model(*args), num_classes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()

    return infer, step


def _example(registry: Registry, name: str, parts: Mapping, overrides: Mapping, batch: int) -> tuple:
    """The registered example call, its input resized to the configuration's ``image_size`` etc. for a model."""
    from vit_core.training.build import sample_shape

    info = registry.info(name)
    args = list(registry.example_args(info, parts, batch))
    if info.kind == "model":
        shape = sample_shape(info, {**info.default_config, **overrides})
        many = info.input_kind == "image-list"
        args[0] = [torch.randn(shape) for _ in range(batch)] if many else torch.randn(batch, *shape)
    return tuple(args)


MEMORY_SCRIPT = """
import json, sys, torch
sys.path[:0] = {paths!r}
from vit_core.runtime.bench import training_step_peak
print(json.dumps(training_step_peak({name!r}, {overrides!r}, {batch}, {device!r})))
"""


def training_step_peak(name: str, overrides: Mapping[str, Any], batch: int, device: str) -> int:
    """Bytes by which memory peaks, over its size once model and batch are built, during ``name``'s first two
    training steps in this process (:func:`fresh_training_peak` runs it in a fresh one)."""
    registry = get_registry()
    target = torch.device(device)
    torch.manual_seed(0)
    model, parts = registry.create_with_parts(name, **dict(overrides))
    args = tuple(_to(a, target) for a in _example(registry, name, parts, overrides, batch))
    _, step = timed_calls(model.to(target).train(), args, registry.info(name).kind, target)
    return peak_increase(lambda: (step(), step()), device=device)


def fresh_training_peak(
    name: str, overrides: Mapping[str, Any], batch: int, device: str, threads: int | None = None
) -> int:
    """:func:`training_step_peak` in a fresh Python process (this one's ``sys.path``, its installed plugins), on
    ``threads`` intra-op CPU threads (``OMP_NUM_THREADS``; None: the environment's)."""
    script = MEMORY_SCRIPT.format(paths=sys.path, name=name, overrides=dict(overrides), batch=batch, device=device)
    env = os.environ | pinned_threshold_env() | ({"OMP_NUM_THREADS": str(threads)} if threads is not None else {})
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"measuring {name}'s training memory in a fresh process failed:\n{out.stderr[-2000:]}")
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, list):
        return [v.to(device) for v in value]
    return value.to(device)


def bench(
    names: list[str],
    *,
    batch: int = 8,
    rounds: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    max_discards: int = 5,
    threads: int | None = None,
) -> list[BenchRow]:
    """Figures for each name registered by the installed plugins (memory is measured in fresh processes,
    which see those), timed interleaved; ``overrides`` (``--set``) apply to every model.  On CPU, ``threads``
    sets torch's intra-op threads for the timing (and the memory processes); None leaves them as they are."""
    from vit_core.training.build import check_keys

    if batch < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"batch and rounds must be at least 1 and warmup at least 0, got {batch}, {rounds}, {warmup}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    registry = get_registry()
    target = torch.device(device)
    if target.type == "cpu" and threads is not None:
        torch.set_num_threads(threads)
    built = {}
    for name in names:
        info = registry.info(name)
        check_keys(info, list(overrides or {}), info.kind)
        model, parts = registry.create_with_parts(name, **dict(overrides or {}))
        args = _example(registry, name, parts, overrides or {}, batch)
        try:
            flops = count_flops(model, *_example(registry, name, parts, overrides or {}, 1))
        except Exception:  # data-dependent shapes the counter cannot follow: reported as unknown
            flops = None
        model = model.to(target).train()
        args = tuple(_to(a, target) for a in args)
        built[name] = (info, model, args, flops)
    calls = {}
    for name, (info, model, args, _) in built.items():
        calls[f"{name} infer"], calls[f"{name} train"] = timed_calls(model, args, info.kind, target)
    timing = interleaved(calls, rounds=rounds, warmup=warmup, max_discards=max_discards)
    rows = []
    for name, (info, model, _, flops) in built.items():
        rows.append(
            BenchRow(
                model=registry.key(info),
                kind=info.kind,
                params=count_parameters(model),
                flops=flops,
                infer_images_per_s=batch / timing.median(f"{name} infer"),
                train_images_per_s=batch / timing.median(f"{name} train"),
                peak_train_memory=fresh_training_peak(name, overrides or {}, batch, str(target), threads),
                threads=torch.get_num_threads(),
            )
        )
    return rows
