"""The reference README's examples, ported only in their import lines, at their documented sizes."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.readme
README_VIT = dict(
    image_size=256,
    patch_size=32,
    num_classes=1000,
    dim=1024,
    depth=6,
    heads=16,
    mlp_dim=2048,
    dropout=0.1,
    emb_dropout=0.1,
)


def test_usage():
    from vit_core import ViT

    v = ViT(**README_VIT)
    img = torch.randn(1, 3, 256, 256)
    assert v(img).shape == (1, 1000)


def test_simple_vit():
    from vit_core import SimpleViT

    v = SimpleViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=16, mlp_dim=2048)
    assert v(torch.randn(1, 3, 256, 256)).shape == (1, 1000)


def navit(**kwargs):
    from vit_core import NaViT

    return NaViT(
        image_size=256,
        patch_size=32,
        num_classes=1000,
        dim=1024,
        depth=6,
        heads=16,
        mlp_dim=2048,
        token_dropout_prob=0.1,
        **kwargs,
    )


def test_navit_list_of_lists():
    v = navit(dropout=0.1, emb_dropout=0.1)
    images = [
        [torch.randn(3, 256, 256), torch.randn(3, 128, 128)],
        [torch.randn(3, 128, 256), torch.randn(3, 256, 128)],
        [torch.randn(3, 64, 256)],
    ]
    assert v(images).shape == (5, 1000)


def test_navit_auto_grouping():
    v = navit(dropout=0.1, emb_dropout=0.1)
    images = [
        torch.randn(3, 256, 256),
        torch.randn(3, 128, 128),
        torch.randn(3, 128, 256),
        torch.randn(3, 256, 128),
        torch.randn(3, 64, 256),
    ]
    assert v(images, group_images=True, group_max_seq_len=64).shape == (5, 1000)


def test_navit_nested_tensor_form():
    v = navit(dropout=0.0, emb_dropout=0.0)
    images = [
        torch.randn(3, 256, 256),
        torch.randn(3, 128, 128),
        torch.randn(3, 128, 256),
        torch.randn(3, 256, 128),
        torch.randn(3, 64, 256),
    ]
    preds = v(images)
    assert preds.shape == (5, 1000)
    preds.sum().backward()


def test_accessing_attention():
    from vit_core import Recorder, ViT

    v = Recorder(ViT(**README_VIT))
    preds, attns = v(torch.randn(1, 3, 256, 256))
    assert preds.shape == (1, 1000)
    assert attns.shape == (1, 6, 16, 65, 65)
    assert isinstance(v.eject(), ViT)


def test_accessing_embeddings():
    from vit_core import Extractor, ViT

    v = Extractor(ViT(**README_VIT))
    logits, embeddings = v(torch.randn(1, 3, 256, 256))
    assert logits.shape == (1, 1000)
    assert embeddings.shape == (1, 65, 1024)


def test_non_square_images():
    from vit_core import ViT

    assert ViT(**README_VIT)(torch.randn(1, 3, 256, 128)).shape == (1, 1000)


def test_non_square_patches():
    from vit_core import ViT

    v = ViT(**(README_VIT | dict(image_size=(256, 128), patch_size=(32, 16))))
    assert v(torch.randn(1, 3, 256, 128)).shape == (1, 1000)


def test_efficient_attention_transformer_argument():
    """The README plugs an external efficient transformer; any (b, n, d) -> (b, n, d) module works."""
    from vit_core import ViT
    from vit_core.layers import Transformer

    efficient_transformer = Transformer(dim=512, depth=2, heads=8, dim_head=64, mlp_dim=1024)
    v = ViT(dim=512, image_size=1024, patch_size=32, num_classes=1000, transformer=efficient_transformer)
    assert v(torch.randn(1, 3, 1024, 1024)).shape == (1, 1000)
