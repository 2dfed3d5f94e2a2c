"""vit-ssl under DistributedDataParallel: two CPU processes, gloo on loopback.

* DINO (and EsViT): wrapped in DDP, each rank trains on its half of a global batch; the losses
  (averaged over the ranks), the centres and the EMA teachers equal a single-process run on the
  whole batch.  The views are fixed (``views=``): augmentation randomness is per rank by design.
* MAE / SimMIM: every rank seeded alike still draws its own masks, and each step new ones.
* k-NN and linear probe: on sharded features every rank gets the accuracy of the whole set.
"""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from vit_core import ViT
from vit_core.testing.processes import free_port

pytest.importorskip("vit_ssl")
from vit_ssl import MAE, Dino, EsViTTrainer, SimMIM, knn_accuracy, linear_probe_accuracy

WORLD = 2
CFG = dict(image_size=16, patch_size=4, num_classes=0, dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16)
HEAD = dict(projection_hidden_size=32, projection_layers=3, num_classes_K=16, bottleneck_dim=8)
STEPS = 2


def global_views(step: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The fixed views of step ``step``: 4 images, 2 global views of 16 px, 2 local views of 8 px."""
    generator = torch.Generator().manual_seed(100 + step)
    return (
        [torch.rand(4, 3, 16, 16, generator=generator) for _ in range(2)],
        [torch.rand(4, 3, 8, 8, generator=generator) for _ in range(2)],
    )


def build(cls):
    torch.manual_seed(0)
    return cls(ViT(**CFG), 16, local_image_size=8, moving_average_decay=0.9, **HEAD)


def train(learner, model, rows: slice) -> list[float]:
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.5)
    losses = []
    for step in range(STEPS):
        globals_, locals_ = global_views(step)
        loss = model(views=([v[rows] for v in globals_], [v[rows] for v in locals_]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        learner.update_moving_average()
        losses.append(loss.item())
    return losses


def state(learner) -> dict[str, torch.Tensor]:
    out = {"center": learner.centering.center.clone()}
    if learner.region_centering is not None:
        out["region_center"] = learner.region_centering.center.clone()
    out.update({f"teacher.{k}": v.clone() for k, v in learner.teacher.module.state_dict().items()})
    return out


def worker(rank: int, port: int, results: dict) -> None:
    torch.set_num_threads(1)
    reference = {}
    for cls in (Dino, EsViTTrainer):  # single process on the whole batch, before any process group
        learner = build(cls)
        reference[cls.__name__] = (train(learner, learner, slice(None)), state(learner))
    generator = torch.Generator().manual_seed(5)  # the same features on every rank, each keeps its shard
    centres = torch.randn(4, 6, generator=generator)  # overlapping classes: accuracies 0.75 and 0.6
    labels = torch.arange(4).repeat(15)
    features = centres[labels] + torch.randn(60, 6, generator=generator)
    data = features[:40], labels[:40], features[40:], labels[40:]
    whole = {"knn": knn_accuracy(*data, k=5), "probe": linear_probe_accuracy(*data)}
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=120),
    )
    try:
        out = {}
        for cls in (Dino, EsViTTrainer):
            learner = build(cls)
            ddp = DistributedDataParallel(learner)
            losses = torch.tensor(train(learner, ddp, slice(2 * rank, 2 * rank + 2)))
            gathered = [torch.zeros_like(losses) for _ in range(WORLD)]
            dist.all_gather(gathered, losses)
            out[cls.__name__] = (torch.stack(gathered).mean(dim=0).tolist(), state(learner), reference[cls.__name__])

        torch.manual_seed(0)  # every rank alike: the masks must still differ
        masks = []
        mae = MAE(encoder=ViT(**CFG), decoder_dim=16, decoder_heads=2, decoder_dim_head=8)
        simmim = SimMIM(encoder=ViT(**CFG))
        images = torch.rand(2, 3, 16, 16)
        for _ in range(2):
            masks.append(mae.reconstruct(images).masked)
        simmim_ids = simmim.generator.rand((2, 16), "cpu")
        all_masks = [torch.zeros(2, 2, 16, dtype=torch.bool) for _ in range(WORLD)]
        dist.all_gather(all_masks, torch.stack(masks))
        all_draws = [torch.zeros(2, 16) for _ in range(WORLD)]
        dist.all_gather(all_draws, simmim_ids)
        out["masks"], out["simmim_draws"] = all_masks, all_draws

        shards = [t[rank * len(t) // WORLD : (rank + 1) * len(t) // WORLD] for t in data]
        out["knn"] = knn_accuracy(*shards, k=5), whole["knn"]
        out["probe"] = linear_probe_accuracy(*shards), whole["probe"]
        results[rank] = out
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results() -> dict:
    manager = mp.Manager()
    shared = manager.dict()
    mp.spawn(worker, args=(free_port(), shared), nprocs=WORLD, join=True)
    out = dict(shared)
    manager.shutdown()
    return out


@pytest.mark.parametrize("trainer", ["Dino", "EsViTTrainer"])
def test_centre_losses_and_teacher_equal_the_single_process_run(results, trainer):
    for rank in range(WORLD):
        losses, learned, (single_losses, single) = results[rank][trainer]
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(single_losses), rtol=1e-5, atol=1e-6)
        assert learned.keys() == single.keys()
        for key in single:
            torch.testing.assert_close(learned[key], single[key], rtol=1e-4, atol=1e-6, msg=f"{trainer} {key}")
        assert single["center"].abs().sum() > 0


def test_masks_differ_across_ranks_and_steps(results):
    masks = results[0]["masks"]
    assert torch.equal(masks[0], results[1]["masks"][0]), "every rank gathers the same list"
    rank0, rank1 = masks
    assert not torch.equal(rank0[0], rank1[0]), "two ranks seeded alike drew the same MAE mask"
    assert not torch.equal(rank0[0], rank0[1]), "a rank drew the same MAE mask twice"
    assert (rank0.sum(dim=-1) == 12).all() and (rank1.sum(dim=-1) == 12).all()
    draws = results[0]["simmim_draws"]
    assert not torch.equal(draws[0], draws[1])


def test_knn_and_probe_on_shards_equal_the_whole_set(results):
    for rank in range(WORLD):
        for score in ("knn", "probe"):
            sharded, whole = results[rank][score]
            assert sharded == pytest.approx(whole, abs=1e-12), score
