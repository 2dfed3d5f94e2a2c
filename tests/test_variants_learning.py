"""vit-variants learn: a few optimizer steps on scikit-learn's bundled digits lower the loss, for every model."""

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
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits upsampled to 16x16, one channel, standardised."""
    data = datasets.load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    images = F.interpolate(images, size=16, mode="bilinear", align_corners=False)
    return (images - images.mean()) / images.std(), torch.tensor(data.target)


def losses(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int = 40, lr: float = 3e-3
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


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_learns_digits(digits, name: str) -> None:
    images, labels = digits
    model = getattr(vit_variants, name)(**CONFIGS[name])
    trace = losses(model, images, labels, lr=LEARNING_RATES.get(name, 3e-3))
    first, last = mean(trace[:8]), mean(trace[-8:])
    assert last < 0.8 * first, f"{name}: mean loss {first:.3f} over the first steps, {last:.3f} over the last"


def test_adapter_learns_a_new_task_on_a_frozen_backbone(digits) -> None:
    """A backbone trained on the ten digits; then odd versus even, learned by an adapter's memories,
    class token and head alone."""
    images, labels = digits
    backbone = vit_variants.LearnableMemoryViT(**CONFIGS["LearnableMemoryViT"])
    losses(backbone, images, labels)
    adapter = vit_variants.Adapter(vit=backbone, num_memories_per_layer=4, num_classes=2)
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}
    trace = losses(adapter, images, labels % 2, lr=1e-2)
    assert mean(trace[-8:]) < 0.8 * mean(trace[:8])
    assert all(torch.equal(frozen[k], v) for k, v in backbone.state_dict().items())
