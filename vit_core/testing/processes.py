"""Gloo process groups on one machine, for tests of distributed training in ``torch.multiprocessing.spawn``
workers: the free port and the environment torchrun would give each process.  vit-core's tests and every
plugin's use them alike."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import torch.distributed as dist


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gloo_group(rank: int, world: int, port: int, **env: str) -> Iterator[None]:
    """Rank ``rank`` of ``world`` in a gloo group at 127.0.0.1:``port``, with torchrun's variables set
    (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; ``env``: more), so ``vit train``
    sees a torchrun process; one group for every run inside (the loop leaves a group it did not start), destroyed
    on exit."""
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), **env)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()
