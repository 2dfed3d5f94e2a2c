"""Recorder and Extractor on models built from the core blocks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from vit_core import Extractor, NaViT, Recorder, SimpleViT, ViT
from vit_core.layers import Attention

SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=32, depth=3, heads=2, mlp_dim=64, dim_head=16)


def test_recorder_maps_are_softmax_rows_and_outputs_unchanged():
    model = ViT(**SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    recorder = Recorder(model)
    preds, attns = recorder(x)
    torch.testing.assert_close(preds, expected, atol=1e-5, rtol=1e-5)
    assert attns.shape == (2, 3, 2, 17, 17)
    torch.testing.assert_close(attns.sum(-1), torch.ones(2, 3, 2, 17))


def test_recorder_records_only_when_asked():
    model = SimpleViT(**SMALL)
    recorder = Recorder(model)
    assert all(m.recorder is None for m in model.modules() if isinstance(m, Attention))
    recorder(torch.randn(1, 3, 32, 32))
    assert all(m.recorder is None for m in model.modules() if isinstance(m, Attention))
    assert recorder.eject() is model
    with pytest.raises(RuntimeError, match="ejected"):
        recorder(torch.randn(1, 3, 32, 32))


def test_recorder_first_layer_map_matches_manual_attention():
    model = ViT(**(SMALL | dict(depth=1))).eval()
    x = torch.randn(1, 3, 32, 32)
    _, attns = Recorder(model)(x)
    block = model.transformer.layers[0]
    tokens = block.attn_norm(model.embed(x))
    q, k, _ = block.attn.to_qkv(tokens).view(1, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
    manual = (q @ k.transpose(-1, -2) * 16**-0.5).softmax(-1)
    torch.testing.assert_close(attns[:, 0], manual, atol=1e-5, rtol=1e-5)


def test_recorder_on_navit_maps_each_image_of_a_bucket_as_if_alone():
    """Two 16x16 images share a bucket (packed first, in input order); the 32x32 one has its own."""
    model = NaViT(**SMALL).eval()
    imgs = [torch.randn(3, 16, 16), torch.randn(3, 32, 32), torch.randn(3, 16, 16)]
    expected = model(imgs)
    preds, attns = Recorder(model)(imgs)
    torch.testing.assert_close(preds, expected, atol=1e-5, rtol=1e-5)
    assert [tuple(a.shape) for a in attns] == [(2, 2, 4, 4), (1, 2, 16, 16)] * 3
    for maps in attns:
        torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    for image, position in ((0, 0), (2, 1)):
        _, alone = Recorder(model)([imgs[image]])  # (1, layers, heads, 4, 4)
        for layer in range(3):
            torch.testing.assert_close(attns[2 * layer][position], alone[0, layer], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(attns[0][0], attns[0][1])


def test_recorder_in_training_mode():
    """Maps are recorded while training too: softmax rows (before attention dropout), detached, and the
    prediction keeps its graph."""
    model = ViT(**SMALL).train()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    preds, attns = Recorder(model)(x)
    torch.testing.assert_close(preds, expected, atol=1e-5, rtol=1e-5)
    assert attns.shape == (2, 3, 2, 17, 17) and not attns.requires_grad
    preds.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    dropped = ViT(**SMALL, dropout=0.5).train()
    _, attns = Recorder(dropped)(x)
    torch.testing.assert_close(attns.sum(-1), torch.ones(2, 3, 2, 17))


def test_extractor_returns_transformer_tokens():
    model = ViT(**SMALL)
    logits, embeddings = Extractor(model)(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and embeddings.shape == (2, 17, 32)
    only = Extractor(model, return_embeddings_only=True)(torch.randn(2, 3, 32, 32))
    assert only.shape == (2, 17, 32)


def test_extractor_on_navit_returns_the_packed_tokens():
    model = NaViT(**SMALL).eval()
    imgs = [torch.randn(3, 16, 16), torch.randn(3, 32, 32), torch.randn(3, 8, 16)]
    logits, tokens = Extractor(model)(imgs)
    features = model.forward_features(imgs)
    assert tokens.shape == (1, 2 + 4 + 16, 32)
    torch.testing.assert_close(tokens, features.tokens)
    torch.testing.assert_close(logits, model(imgs))
    torch.testing.assert_close(model.forward_head(replace(features, tokens=tokens)), logits)


def test_extractor_named_layer_and_input():
    model = ViT(**SMALL)
    extractor = Extractor(model, layer_name="patch_embed", layer_save_input=True)
    x = torch.randn(1, 3, 32, 32)
    _, saved = extractor(x)
    torch.testing.assert_close(saved, x)
    assert extractor.eject() is model
    with pytest.raises(ValueError, match="layer_name='nope' is not a module of ViT"):
        Extractor(model, layer_name="nope")
