"""vit-variants learn: 80 AdamW steps on scikit-learn's bundled digits bring the mean of the last ten losses
well below the first ten's and held-out accuracy above what each model reaches with a margin (nothing is
downloaded)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

vit_variants = pytest.importorskip("vit_variants")
datasets = pytest.importorskip("sklearn.datasets")

PATCH = dict(image_size=16, patch_size=4, num_classes=10, dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16, channels=1)
CONFIGS = {
    "DeepViT": dict(PATCH, heads=4, dim_head=8),  # re-attention normalises over heads: 2 heads say little
    "CaiT": dict(PATCH, cls_depth=1, layer_dropout=0.1),
    "T2TViT": dict(
        image_size=16, num_classes=10, dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16, channels=1,
        t2t_layers=((3, 2), (3, 2)),
    ),
    "CCT": dict(
        img_size=16, embedding_dim=32, n_input_channels=1, n_conv_layers=1, kernel_size=3, stride=1, padding=1,
        num_layers=2, num_heads=2, mlp_ratio=2.0, num_classes=10, positional_embedding="learnable",
    ),
    "CrossViT": dict(
        image_size=16, num_classes=10, channels=1, sm_dim=32, lg_dim=48, sm_patch_size=4, lg_patch_size=8,
        sm_enc_depth=1, lg_enc_depth=1, sm_enc_heads=2, lg_enc_heads=2, sm_enc_mlp_dim=64, lg_enc_mlp_dim=64,
        sm_enc_dim_head=16, lg_enc_dim_head=16, cross_attn_depth=1, cross_attn_heads=2, cross_attn_dim_head=16,
        depth=1, dropout=0.0, emb_dropout=0.0,
    ),
    "XCiT": dict(PATCH, cls_depth=1, layer_dropout=0.1),
    "ParallelViT": PATCH,
    "SmallDatasetViT": PATCH,
    "LearnableMemoryViT": PATCH,
}  # fmt: skip


LEARNING_RATES = {"CCT": 1e-2}  # CCT's truncated-normal (std 0.02) initialisation starts slower


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Models this small train faster on one thread (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 8x8 digits upsampled to 16x16, one channel, standardised: 1200 to train on, 400 held out."""
    data = datasets.load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    images = F.interpolate(images, size=16, mode="bilinear", align_corners=False)
    images, labels = (images - images.mean()) / images.std(), torch.tensor(data.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, test = order[:1200], order[1200:1600]
    return images[train], labels[train], images[test], labels[test]


STEPS = 80
LOSS_FACTOR = 0.7
"""The mean of the last ten losses must fall below this share of the first ten's; measured over seeds 0-2,
at most 0.61 (ParallelViT), 0.58 (XCiT), 0.56 (the adapter), 0.50 (CaiT), the rest 0.12-0.45."""
ACCURACY = {
    "DeepViT": 0.5,  # measured 0.61 (seeds 1, 2: 0.66, 0.67)
    "CaiT": 0.45,  # 0.55 (0.58, 0.52)
    "T2TViT": 0.7,  # 0.82 (0.82, 0.82)
    "CCT": 0.55,  # 0.67 (0.71, 0.74)
    "CrossViT": 0.8,  # 0.90 (0.89, 0.88)
    "XCiT": 0.35,  # 0.46 (0.66, 0.63)
    "ParallelViT": 0.4,  # 0.54 (0.69, 0.50)
    "SmallDatasetViT": 0.55,  # 0.74 (0.63, 0.76)
    "LearnableMemoryViT": 0.55,  # 0.72 (0.67, 0.70)
}
"""Held-out accuracy each model must beat (chance is 0.10)."""


def losses(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int = STEPS, lr: float = 3e-3
) -> list[float]:
    """The training loss of each of ``steps`` AdamW steps on random batches of 32."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    out = []
    for _ in range(steps):
        index = torch.randint(0, len(labels), (32,), generator=generator)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return out


def ten_step_means(trace: list[float]) -> tuple[float, float]:
    """The mean loss of the first ten and of the last ten steps."""
    return sum(trace[:10]) / 10, sum(trace[-10:]) / 10


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (model.eval()(images).argmax(-1) == labels).float().mean().item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_learns_digits(digits, name: str) -> None:
    x_train, y_train, x_test, y_test = digits
    model = getattr(vit_variants, name)(**CONFIGS[name])
    first, last = ten_step_means(losses(model, x_train, y_train, lr=LEARNING_RATES.get(name, 3e-3)))
    assert last < LOSS_FACTOR * first, (
        f"{name}: mean loss of the first ten steps {first:.3f}, of the last ten {last:.3f}"
    )
    reached = accuracy(model, x_test, y_test)
    assert reached > ACCURACY[name], f"{name} reached only {reached:.3f} test accuracy (chance is 0.10)"


def test_adapter_learns_a_new_task_on_a_frozen_backbone(digits) -> None:
    """A backbone trained on the ten digits; then odd versus even, learned by an adapter's memories,
    class token and head alone: held-out accuracy 0.85 measured (seeds 1, 2: 0.83, 0.88; chance is 0.5)."""
    x_train, y_train, x_test, y_test = digits
    backbone = vit_variants.LearnableMemoryViT(**CONFIGS["LearnableMemoryViT"])
    losses(backbone, x_train, y_train)
    adapter = vit_variants.Adapter(vit=backbone, num_memories_per_layer=4, num_classes=2)
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}
    first, last = ten_step_means(losses(adapter, x_train, y_train % 2, lr=1e-2))
    assert last < LOSS_FACTOR * first, (
        f"adapter: mean loss of the first ten steps {first:.3f}, of the last ten {last:.3f}"
    )
    reached = accuracy(adapter, x_test, y_test % 2)
    assert reached > 0.75, f"the adapter reached only {reached:.3f} odd-versus-even test accuracy (chance is 0.5)"
    assert all(torch.equal(frozen[k], v) for k, v in backbone.state_dict().items())
