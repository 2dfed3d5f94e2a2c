"""Every registered trainer through ``vit train``'s loop under DistributedDataParallel: two gloo processes
(as ``torchrun --nproc-per-node 2`` starts them) end with the weights of one process on the same global batches.

The encoders keep the classification head their default configuration gives them (as users build them):
a trainer whose loss leaves a parameter without gradient stops DDP at its second step.  The masks and
augmentations of the two processes are the rows of one process's draw (:mod:`vit_ssl.randomness`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("vit_ssl")
from safetensors.torch import load_file

from vit_core.registry import get_registry
from vit_core.testing.processes import free_port, gloo_group
from vit_core.training.checkpoint import CHECKPOINT
from vit_core.training.config import TrainConfig
from vit_core.training.loop import train

WORLD = 2
STEPS = 3
TINY = dict(image_size=16, patch_size=4, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32)
"""Every component's configuration (its classifier head kept: ``num_classes`` stays the default's)."""
OWN = {
    "mpp": dict(patch_size=4, dim=16),
    "dino": dict(image_size=16, projection_hidden_size=16, num_classes_K=16, bottleneck_dim=8),
    "esvit": dict(image_size=16, projection_hidden_size=16, num_classes_K=16, bottleneck_dim=8),
    "mae": dict(decoder_dim=16),
}
TRAINERS = sorted(info.name for info in get_registry().list(kind="trainer") if info.plugin == "ssl")


def config(name: str, out: Path) -> TrainConfig:
    """A few steps of ``name`` around tiny components, on the bundled digits."""
    info = get_registry().info(name)
    overrides = {f"{arg}.{key}": value for arg in info.components for key, value in TINY.items()}
    overrides.update(OWN.get(name, {}))
    return TrainConfig(
        name, overrides=overrides, batch_size=8, max_steps=STEPS, out=out, progress=False, threads=1, log_every=1
    )


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / CHECKPOINT / "model.safetensors"))


def worker(rank: int, port: int, root: Path) -> None:
    with gloo_group(rank, WORLD, port):
        for name in TRAINERS:
            train(config(name, root / "two" / name), log=lambda _: None)
            dist.barrier()  # rank 0 has written the checkpoint


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("torchrun")
    mp.spawn(worker, args=(free_port(), root), nprocs=WORLD, join=True)
    for name in TRAINERS:
        train(config(name, root / "one" / name), log=lambda _: None)
    return root


def test_every_trainer_is_tested():
    assert {"mae", "simmim", "mpp", "mp3", "dino", "esvit", "distill"} <= set(TRAINERS)


@pytest.mark.parametrize("name", TRAINERS)
def test_two_processes_equal_one(runs, name):
    one, two = weights(runs / "one" / name), weights(runs / "two" / name)
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5, msg=f"{name}: {key}")
