"""How good are an encoder's features?  k-NN accuracy and a linear probe, during or after pre-training.

* :func:`knn_accuracy`: weighted k-nearest-neighbour vote on L2-normalised features (cosine
  similarity), each neighbour weighted ``exp(similarity / temperature)``; ``k=20`` and
  ``temperature=0.07`` as DINO evaluates (arXiv 2104.14294, after Wu et al., arXiv 1805.01978).
* :func:`linear_probe_accuracy`: a multinomial logistic regression on frozen, standardised
  features, fitted full-batch with L-BFGS (deterministic given the features).

Both are correct under ``DistributedDataParallel``: each process passes its own shard of the
training and test features (e.g. from a ``DistributedSampler``); the training features are
gathered on every process, each process scores its own test shard, and the counts are summed, so
every rank returns the accuracy over the union of the shards.  (A ``DistributedSampler`` pads the
last batch by repeating samples; with ``drop_last=False`` those few repeats count twice.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.validation import check_positive_int
from vit_ssl.distributed import all_gather_rows, all_reduce_sum_

Batches = Iterable[tuple[Tensor, Tensor]] | tuple[Tensor, Tensor]


def pooled_features(encoder: nn.Module) -> Callable[[Tensor], Tensor]:
    """The pre-logits vector of a vit-core model (``forward_head(forward_features(x), pre_logits=True)``),
    or the plain output of any other module."""
    if hasattr(encoder, "forward_features") and hasattr(encoder, "forward_head"):
        return lambda x: encoder.forward_head(encoder.forward_features(x), pre_logits=True)
    return encoder


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    data: Batches,
    *,
    batch_size: int = 256,
    features: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """``(features (n, d), labels (n,))`` of ``data`` (an ``(images, labels)`` pair or an iterable of
    such batches, e.g. a DataLoader), in eval mode and without gradients; the encoder's mode is
    restored afterwards.  ``features`` maps a batch to vectors (default :func:`pooled_features`)."""
    check_positive_int("batch_size", batch_size)
    fn = features or pooled_features(encoder)
    if device is None:
        device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        all_images, all_labels = data
        batches: Iterable[tuple[Tensor, Tensor]] = [
            (all_images[i : i + batch_size], all_labels[i : i + batch_size])
            for i in range(0, len(all_images), batch_size)
        ]
    else:
        batches = data
    was_training = encoder.training
    encoder.eval()
    try:
        out, targets = [], []
        for images, labels in batches:
            vectors = fn(images.to(device))
            if vectors.ndim != 2:
                raise ValueError(
                    f"features must be (batch, dim) vectors, got shape {tuple(vectors.shape)}; pass features= "
                    "to pool them"
                )
            out.append(vectors.float())
            targets.append(labels.to(device))
    finally:
        encoder.train(was_training)
    if not out:
        raise ValueError("data holds no batches")
    return torch.cat(out), torch.cat(targets)


def _check_pair(name: str, features: Any, labels: Any) -> None:
    if not isinstance(features, Tensor) or features.ndim != 2 or not features.is_floating_point():
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{name}_features must be a floating-point (n, dim) tensor, got {shape}")
    if not isinstance(labels, Tensor) or labels.shape != features.shape[:1] or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{name}_labels must be integer labels of shape ({features.shape[0]},), got {shape}")


def _num_classes(num_classes: int | None, *labels: Tensor) -> int:
    if num_classes is not None:
        return check_positive_int("num_classes", num_classes)
    device = labels[-1].device  # the test labels': every tensor of the vote meets there
    top = torch.stack([(lab.max() if lab.numel() else lab.new_full((), -1)).to(device) for lab in labels]).max().view(1)
    all_reduce_max = all_gather_rows(top).max()
    return int(all_reduce_max) + 1


def _accuracy(correct: Tensor, total: int, device: torch.device) -> float:
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    counts[0], counts[1] = correct.sum(), total  # a Python scalar fills on the device: no host tensor
    all_reduce_sum_([counts])
    if counts[1] == 0:
        raise ValueError("no test samples on any process")
    return float(counts[0] / counts[1])


@torch.no_grad()
def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> float:
    """Top-1 accuracy of a weighted k-NN vote (cosine similarity, weights ``exp(sim / temperature)``)."""
    _check_pair("train", train_features, train_labels)
    _check_pair("test", test_features, test_labels)
    check_positive_int("k", k)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"temperature must be a positive float, got {temperature!r}")
    classes = _num_classes(num_classes, train_labels, test_labels)
    device = test_features.device  # the bank joins the queries there
    bank = F.normalize(all_gather_rows(train_features.float()), dim=1).to(device)
    bank_labels = all_gather_rows(train_labels.long()).to(device)
    test_labels = test_labels.to(device)
    if bank.shape[1] != test_features.shape[1]:
        raise ValueError(f"train and test features differ in width: {bank.shape[1]} and {test_features.shape[1]}")
    k = min(k, bank.shape[0])
    correct = []
    for start in range(0, test_features.shape[0], chunk_size):
        queries = F.normalize(test_features[start : start + chunk_size].float(), dim=1)
        similarity, index = (queries @ bank.T).topk(k, dim=1)
        votes = torch.zeros(queries.shape[0], classes, device=queries.device)
        votes.scatter_add_(1, bank_labels[index], (similarity / temperature).exp())
        correct.append(votes.argmax(dim=1) == test_labels[start : start + chunk_size])
    hits = torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool, device=test_features.device)
    return _accuracy(hits, test_features.shape[0], test_features.device)


def linear_probe_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int | None = None,
    weight_decay: float = 1e-4,
    steps: int = 100,
) -> float:
    """Top-1 test accuracy of a logistic regression fitted on the (gathered) training features.

    Features are standardised with the training statistics; the probe minimises cross-entropy plus
    ``weight_decay * ||W||^2 / 2`` with at most ``steps`` L-BFGS iterations from zero weights, so
    every process fits the same probe on the same gathered features."""
    _check_pair("train", train_features, train_labels)
    _check_pair("test", test_features, test_labels)
    check_positive_int("steps", steps)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative float, got {weight_decay!r}")
    classes = _num_classes(num_classes, train_labels, test_labels)
    x = all_gather_rows(train_features.detach().float())
    y = all_gather_rows(train_labels.long())
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    probe = nn.Linear(x.shape[1], classes, device=x.device)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(x), y) + weight_decay / 2 * probe.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predictions = probe((test_features.to(x.device).float() - mean) / std).argmax(dim=1)
    return _accuracy(predictions == test_labels.to(x.device), test_features.shape[0], x.device)


def evaluate_features(
    encoder: nn.Module,
    train: Batches,
    test: Batches,
    *,
    k: int = 20,
    temperature: float = 0.07,
    linear_probe: bool = True,
    features: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
    num_classes: int | None = None,
) -> dict[str, float]:
    """``{"knn": ..., "linear_probe": ...}`` for ``encoder`` on this process's shards of ``train`` and
    ``test``; call it on every process of a distributed run (it gathers)."""
    train_x, train_y = extract_features(encoder, train, batch_size=batch_size, features=features)
    test_x, test_y = extract_features(encoder, test, batch_size=batch_size, features=features)
    scores = {
        "knn": knn_accuracy(train_x, train_y, test_x, test_y, k=k, temperature=temperature, num_classes=num_classes)
    }
    if linear_probe:
        scores["linear_probe"] = linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes=num_classes)
    return scores
