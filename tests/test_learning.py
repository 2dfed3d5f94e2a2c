"""Learning on real data: scikit-learn's bundled handwritten digits (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vit_core import NaViT, SimpleViT, ViT

datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=16, mode="bilinear", align_corners=False)
    labels = torch.tensor(data.target)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator)
    train, test = order[:1200], order[1200:1600]
    return images[train], labels[train], images[test], labels[test]


def train(model, images, labels, steps=60, batch=64, forward=None):
    forward = forward or model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    first = None
    for _ in range(steps):
        index = torch.randint(0, len(labels), (batch,))
        loss = F.cross_entropy(forward(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    return first, loss.item()


CONFIG = dict(
    image_size=16, patch_size=4, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16, channels=1
)


@pytest.mark.parametrize("cls", [ViT, SimpleViT])
def test_image_models_learn_digits(digits, cls):
    x_train, y_train, x_test, y_test = digits
    model = cls(**CONFIG)
    first, last = train(model, x_train, y_train)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(-1) == y_test).float().mean().item()
    assert last < first
    assert accuracy > 0.6, f"{cls.__name__} reached only {accuracy:.2f} test accuracy (chance is 0.10)"


def test_navit_learns_digits_at_mixed_resolutions(digits):
    x_train, y_train, x_test, y_test = digits
    model = NaViT(**CONFIG, token_dropout_prob=0.1)

    def forward(batch):  # every other image at half resolution: a real mixed-size batch
        return model([img if i % 2 else F.avg_pool2d(img, 2) for i, img in enumerate(batch)])

    first, last = train(model, x_train, y_train, forward=forward)
    model.eval()
    with torch.no_grad():
        accuracy = (forward(x_test).argmax(-1) == y_test).float().mean().item()
    assert last < first
    assert accuracy > 0.5, f"NaViT reached only {accuracy:.2f} test accuracy (chance is 0.10)"
