"""``vit train --strategy fsdp`` (FSDP2, one unit per block) in two gloo CPU processes, as ``torchrun
--nproc-per-node 2`` starts them: the final weights equal one process's on the same global batches, the sharded
checkpoint (``torch.distributed.checkpoint``) resumes to the weights of one process resumed alike, on two
processes or on one, and its gathered whole model loads in one process."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from vit_core.interop.saving import load_model
from vit_core.testing.processes import free_port, gloo_group
from vit_core.training.checkpoint import CHECKPOINT, SHARDED
from vit_core.training.config import TrainConfig, TrainError
from vit_core.training.loop import train

WORLD = 2
STEPS = 6
TINY = dict(image_size=16, patch_size=8, dim=16, depth=2, heads=2, mlp_dim=32, dim_head=8)


def config(out: Path, **changes) -> TrainConfig:
    """A tiny ViT on synthetic images, global batch 8, ``STEPS`` steps (``changes`` replace fields)."""
    cfg = TrainConfig(
        "vit", overrides=dict(TINY), data="synthetic", batch_size=8, lr=1e-2, max_steps=STEPS, out=out,
        progress=False, threads=1, log_every=1, strategy="fsdp",
    )  # fmt: skip
    return replace(cfg, **changes)


def resumed(out: Path, **changes) -> TrainConfig:
    """``--resume out --max-steps STEPS`` (and ``changes``, given on purpose)."""
    return TrainConfig(
        "vit",
        resume=out,
        max_steps=STEPS,
        progress=False,
        threads=1,
        given=frozenset({"max_steps", *changes}),
        **changes,
    )


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / CHECKPOINT / "model.safetensors"))


def assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=0, msg=key)


def worker(rank: int, port: int, root: Path) -> None:
    quiet = {"log": lambda _: None}
    with gloo_group(rank, WORLD, port, OMP_NUM_THREADS="1"):
        train(config(root / "two"), **quiet)
        train(config(root / "half", max_steps=STEPS // 2), **quiet)
        dist.barrier()  # rank 0 has swapped the checkpoint in
        if rank == 0:  # a copy for one process to resume
            shutil.copytree(root / "half", root / "half-for-one")
        train(resumed(root / "half"), **quiet)
        train(config(root / "ddp", strategy="ddp", max_steps=STEPS // 2), **quiet)
        dist.barrier()
        try:
            train(resumed(root / "ddp", strategy="fsdp"), **quiet)
        except TrainError as exc:
            (root / f"refused-{rank}.txt").write_text(str(exc))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fsdp")
    mp.spawn(worker, args=(free_port(), root), nprocs=WORLD, join=True)
    train(config(root / "one", strategy="ddp"), log=lambda _: None)
    train(config(root / "one-half", strategy="ddp", max_steps=STEPS // 2), log=lambda _: None)
    train(resumed(root / "one-half"), log=lambda _: None)
    train(resumed(root / "half-for-one", strategy="ddp"), log=lambda _: None)
    return root


def test_two_sharded_processes_equal_one(runs: Path) -> None:
    assert_same(weights(runs / "two"), weights(runs / "one"))
    shards = sorted(p.name for p in (runs / "two" / CHECKPOINT / SHARDED).iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]


def test_the_gathered_model_loads_in_one_process(runs: Path) -> None:
    model = load_model(runs / "two")
    assert_same({k: v.detach() for k, v in model.state_dict().items()}, weights(runs / "one"))
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_sharded_checkpoints_resume_on_two_processes_or_one(runs: Path) -> None:
    """Resumed at step 3 of 6 with the optimizer's shards: the weights of one process resumed alike (an
    optimizer started afresh would differ by far more than the tolerance)."""
    expected = weights(runs / "one-half")
    assert_same(weights(runs / "half"), expected)
    assert_same(weights(runs / "half-for-one"), expected)


def test_a_checkpoint_without_shards_is_not_resumed_sharded(runs: Path) -> None:
    for rank in range(WORLD):
        message = (runs / f"refused-{rank}.txt").read_text()
        assert "--strategy fsdp: the checkpoint was written without FSDP" in message and "--strategy ddp" in message
