"""Where a training process runs: its rank under ``torchrun``, its device, its CPU threads and its process group.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in ``DistributedDataParallel`` (nccl on GPU,
gloo on CPU), or with ``--strategy fsdp`` sharded by FSDP2 (``fully_shard``, one unit per block of the model's
``block_order()``, then the whole; its checkpoints in :mod:`~vit_core.training.checkpoint`); a single process runs
the same code with a world of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from vit_core.training.config import TrainError


@dataclass(frozen=True)
class Processes:
    """This process's place among torchrun's: ``world`` processes, this one ``rank`` (``local_rank`` on its node)."""

    world: int
    rank: int
    local_rank: int

    @property
    def main(self) -> bool:
        """Rank 0: the only process that prints and writes files."""
        return self.rank == 0


def processes() -> Processes:
    """This process's place, from torchrun's ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (one process without them)."""
    env = os.environ
    return Processes(int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")))


def select_device(requested: str | None, world: int, local_rank: int) -> torch.device:
    """``--device``, else cuda when present; under torchrun a bare ``cuda`` means this process's GPU."""
    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None and world > 1:
            return torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank if world > 1 else 0)
    return torch.device("cpu")


def cpu_threads(requested: int | None) -> int:
    """CPU threads for ``vit train`` and ``vit bench``: ``--threads``, else ``OMP_NUM_THREADS``, else 1.

    One thread per process by default, as torchrun sets: the registered default configurations are small,
    so a step is dominated by dispatching operators, which intra-op threads do not speed up; on a busy
    machine their spin-waiting made a step of ``vit train vit`` 15-20 times slower (20 against 380 images/s).
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise TrainError(f"--threads must be at least 1, got {requested}")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else 1


@contextmanager
def process_group(world: int, device: torch.device) -> Iterator[None]:
    """The default process group for ``world`` > 1 processes (nccl on GPU, gloo on CPU) while the block runs,
    unless one is already initialised (it is then left as it is); nothing for a single process.  A block that
    raises leaves the group up: the other processes may not reach a teardown barrier."""
    owns = world > 1 and not torch.distributed.is_initialized()
    if owns and device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts: each process on its own GPU, not all on GPU 0
        torch.distributed.init_process_group("nccl", device_id=device)
    elif owns:
        torch.distributed.init_process_group("gloo")
    yield
    if owns:
        torch.distributed.barrier()  # rank 0 may still be writing: tearing gloo down under it aborts the process
        torch.distributed.destroy_process_group()


STRATEGIES = ("ddp", "fsdp")
"""``--strategy`` choices under torchrun."""


def check_strategy(strategy: str, world: int) -> None:
    """``--strategy``: a known one; FSDP only under torchrun (it shards across processes)."""
    if strategy not in STRATEGIES:
        raise TrainError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "fsdp" and world == 1:
        raise TrainError(
            "--strategy fsdp shards the model across processes: start it with torchrun "
            "(torchrun --nproc-per-node N -m vit_core.cli train ...); one process trains without it"
        )


def shard(module: nn.Module) -> None:
    """Shard ``module`` in place across the process group with FSDP2 (``fully_shard``): each block of its
    ``block_order()`` a unit, then the whole.  Its parameters become new DTensors, so the optimizer is made
    after this (``vit train`` does), and every rank takes part in its forward, evaluation and checkpoints."""
    from torch.distributed.fsdp import fully_shard

    from vit_core.models.base import VisionModel

    order = module.block_order() if isinstance(module, VisionModel) else None
    for block in order.blocks if order is not None else ():
        name = max(block, key=len)  # the block itself (a stage's first block also names its stage)
        fully_shard(module.get_submodule(name))
    fully_shard(module)


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module`` was sharded by :func:`shard` (FSDP2): its state is then spread over the ranks."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def parallel(model: nn.Module, world: int, device: torch.device, strategy: str = "ddp") -> nn.Module:
    """``model`` for ``world`` > 1 processes (inside :func:`process_group`): wrapped in
    ``DistributedDataParallel``; as it is for one process, and for ``strategy="fsdp"`` (sharded by :func:`shard`
    before its optimizer was made)."""
    if world == 1 or strategy == "fsdp":
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def fast_float32_matmul(device: torch.device, enabled: bool = True) -> None:
    """TF32 tensor cores for float32 matrix products on CUDA (``torch.set_float32_matmul_precision("high")``,
    about 10 bits of mantissa in the products, float32 accumulation), unless ``enabled`` is false (the
    user's opt-out keeps full float32).  Nothing on other devices."""
    if device.type == "cuda" and enabled:
        torch.set_float32_matmul_precision("high")
