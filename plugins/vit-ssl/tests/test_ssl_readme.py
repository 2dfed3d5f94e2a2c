"""The reference README's SSL and distillation examples, ported in their import lines, at their
documented model sizes (batches cut to one or two images to keep the suite fast).

Each: the loss is a finite scalar, ``backward()`` works, one optimizer step changes the encoder's
weights, and the encoder's state dict loads into a plain model of the same class with equal outputs
(headless for the masked-modelling trainers: they remove the classifier their loss never reads).
The README's EsViT example trains a vit-hierarchical CvT: it needs two plugins, so it runs in the root
tests (tests/test_readme.py, verbatim).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vit_core import ViT

pytestmark = pytest.mark.readme
pytest.importorskip("vit_ssl")

README_VIT = dict(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=8, mlp_dim=2048)


def check_example(trainer: nn.Module, encoder: nn.Module, loss: torch.Tensor, plain: nn.Module) -> None:
    assert loss.ndim == 0 and loss.is_floating_point() and torch.isfinite(loss)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    loss.backward()
    torch.optim.SGD([p for p in trainer.parameters() if p.requires_grad], lr=1e-2).step()
    changed = [k for k, v in encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert any("patch" in k or "conv" in k or "stages.0" in k for k in changed), changed[:5]
    plain.load_state_dict(encoder.state_dict())
    encoder.eval(), plain.eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), encoder(x), rtol=0, atol=0)


def test_masked_autoencoder():
    from vit_ssl import MAE

    v = ViT(**README_VIT)
    mae = MAE(encoder=v, masking_ratio=0.75, decoder_dim=512, decoder_depth=6)
    images = torch.randn(2, 3, 256, 256)
    check_example(mae, v, mae(images), ViT(**{**README_VIT, "num_classes": 0}))


def test_simmim():
    from vit_ssl import SimMIM

    v = ViT(**README_VIT)
    mim = SimMIM(encoder=v, masking_ratio=0.5)
    check_example(mim, v, mim(torch.randn(2, 3, 256, 256)), ViT(**{**README_VIT, "num_classes": 0}))


def test_masked_patch_prediction():
    from vit_ssl import MPP

    config = dict(README_VIT, dropout=0.1, emb_dropout=0.1)
    model = ViT(**config)
    mpp_trainer = MPP(
        transformer=model, patch_size=32, dim=1024, mask_prob=0.15, random_patch_prob=0.30, replace_prob=0.50
    )
    images = torch.FloatTensor(2, 3, 256, 256).uniform_(0.0, 1.0)
    check_example(mpp_trainer, model, mpp_trainer(images), ViT(**{**config, "num_classes": 0}))


def test_masked_position_prediction():
    from vit_ssl import MP3

    config = dict(num_classes=1000, image_size=256, patch_size=8, dim=1024, depth=6, heads=8, mlp_dim=2048, dropout=0.1)
    v = ViT(**config)
    mp3 = MP3(vit=v, masking_ratio=0.75)
    check_example(mp3, v, mp3(torch.randn(1, 3, 256, 256)), ViT(**{**config, "num_classes": 0}))


DINO_ARGS = dict(
    projection_hidden_size=256,
    projection_layers=4,
    num_classes_K=65336,
    student_temp=0.9,
    teacher_temp=0.04,
    local_upper_crop_scale=0.4,
    global_lower_crop_scale=0.5,
    moving_average_decay=0.9,
    center_moving_average_decay=0.9,
)


def test_dino():
    from vit_ssl import Dino

    model = ViT(**README_VIT)
    learner = Dino(model, image_size=256, hidden_layer="to_latent", **DINO_ARGS)
    loss = learner(torch.randn(2, 3, 256, 256))
    check_example(learner, model, loss, ViT(**README_VIT))
    learner.update_moving_average()
    assert learner.centering.center.abs().sum() > 0


def test_distillation():
    from vit_ssl import DistillableViT, DistillWrapper

    teacher = ViT(**README_VIT)  # the README's torchvision resnet50: any (batch, 1000) classifier
    config = dict(README_VIT, dropout=0.1, emb_dropout=0.1)
    v = DistillableViT(**config)
    distiller = DistillWrapper(student=v, teacher=teacher, temperature=3, alpha=0.5, hard=False)
    img = torch.randn(2, 3, 256, 256)
    labels = torch.randint(0, 1000, (2,))
    loss = distiller(img, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    v.eval()
    pred = v(img)
    assert pred.shape == (2, 1000)
    vit = v.to_vit()
    assert type(vit) is ViT
    torch.testing.assert_close(vit.eval()(img), pred, rtol=0, atol=0)
