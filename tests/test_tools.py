"""Recorder and Extractor on models built from the core blocks."""

from __future__ import annotations

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


def test_recorder_on_navit_returns_per_bucket_maps():
    model = NaViT(**SMALL).eval()
    _, attns = Recorder(model)([torch.randn(3, 16, 16), torch.randn(3, 32, 32)])
    assert [tuple(a.shape) for a in attns] == [(1, 2, 4, 4), (1, 2, 16, 16)] * 3


def test_extractor_returns_transformer_tokens():
    model = ViT(**SMALL)
    logits, embeddings = Extractor(model)(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and embeddings.shape == (2, 17, 32)
    only = Extractor(model, return_embeddings_only=True)(torch.randn(2, 3, 32, 32))
    assert only.shape == (2, 17, 32)


def test_extractor_named_layer_and_input():
    model = ViT(**SMALL)
    extractor = Extractor(model, layer_name="patch_embed", layer_save_input=True)
    x = torch.randn(1, 3, 32, 32)
    _, saved = extractor(x)
    torch.testing.assert_close(saved, x)
    assert extractor.eject() is model
    with pytest.raises(ValueError, match="layer_name='nope' is not a module of ViT"):
        Extractor(model, layer_name="nope")
