"""Learning on real data: scikit-learn's bundled handwritten digits (nothing is downloaded).

Thresholds sit below what each model reaches here in 200 steps (measured over several seeds):
ViT 0.92-0.93, SimpleViT 0.89-0.94, NaViT at mixed resolutions 0.84-0.89.  A model that ignores
patch positions reaches them too (bags of patches tell digits apart: 0.91, 0.91 and 0.86 with
the positions removed), so each test also moves every patch of the test images to another cell
of its grid and asks for a drop in accuracy (measured: 0.17, 0.38 and 0.10); a position-blind
model gives the same answers on shuffled images.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vit_core import NaViT, SimpleViT, ViT

datasets = pytest.importorskip("sklearn.datasets")

STEPS = 200
PATCH = 4


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


def train(model, forward, images, labels, steps=STEPS, batch=64) -> list[float]:
    """AdamW steps on random minibatches; returns every step's loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        index = torch.randint(0, len(labels), (batch,))
        loss = F.cross_entropy(forward(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def derangement(n: int) -> torch.Tensor:
    """A fixed permutation of ``range(n)`` that moves every element."""
    generator = torch.Generator().manual_seed(0)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not (perm == torch.arange(n)).any():
            return perm


def shuffle_patches(images: torch.Tensor) -> torch.Tensor:
    """``(..., channels, height, width)`` images with every patch moved to another cell of their patch grid:
    the same patches, in other places."""
    *lead, c, h, w = images.shape
    gh, gw = h // PATCH, w // PATCH
    cells = images.reshape(*lead, c, gh, PATCH, gw, PATCH).transpose(-3, -2).reshape(*lead, c, gh * gw, PATCH, PATCH)
    cells = cells[..., derangement(gh * gw), :, :]
    return cells.reshape(*lead, c, gh, gw, PATCH, PATCH).transpose(-3, -2).reshape(*lead, c, h, w)


def check_learned(name, model, forward, digits, threshold):
    """Mean loss of the last ten steps well below the first ten; test accuracy above ``threshold``;
    accuracy drops when every image's patches are shuffled (``forward(images, shuffle=True)``)."""
    x_train, y_train, x_test, y_test = digits
    losses = train(model, forward, x_train, y_train)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    model.eval()
    with torch.no_grad():
        accuracy = (forward(x_test).argmax(-1) == y_test).float().mean().item()
        shuffled = (forward(x_test, shuffle=True).argmax(-1) == y_test).float().mean().item()
    assert last < 0.5 * first, f"{name}: mean loss of the first ten steps {first:.2f}, of the last ten {last:.2f}"
    assert accuracy > threshold, f"{name} reached only {accuracy:.3f} test accuracy (chance is 0.10)"
    assert shuffled < accuracy - 0.03, (
        f"{name}: {accuracy:.3f} on test images, {shuffled:.3f} with their patches shuffled: "
        "the model does not use where patches are"
    )


CONFIG = dict(
    image_size=16, patch_size=PATCH, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16, channels=1
)


@pytest.mark.parametrize("cls", [ViT, SimpleViT])
def test_image_models_learn_digits(digits, cls):
    model = cls(**CONFIG)

    def forward(images, shuffle=False):
        return model(shuffle_patches(images) if shuffle else images)

    check_learned(cls.__name__, model, forward, digits, threshold=0.85)


def test_navit_learns_digits_at_mixed_resolutions(digits):
    model = NaViT(**CONFIG, token_dropout_prob=0.1)

    def forward(batch, shuffle=False):  # every other image at half resolution: a real mixed-size batch
        images = [img if i % 2 else F.avg_pool2d(img, 2) for i, img in enumerate(batch)]
        return model([shuffle_patches(img) for img in images] if shuffle else images)

    check_learned("NaViT", model, forward, digits, threshold=0.8)
