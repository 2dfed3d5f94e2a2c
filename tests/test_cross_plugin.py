"""Tests that need two plugins installed together (a plugin's own tests need only vit-core and that plugin)."""

from __future__ import annotations

import pytest
import torch

from vit_core import create_model


def test_esvit_reads_cvt_layers() -> None:
    """The README's EsViT example on a small CvT (vit-ssl's trainer on vit-hierarchical's model):
    ``hidden_layer='layers'`` gives the trainer the map's regions."""
    vit_ssl = pytest.importorskip("vit_ssl")
    pytest.importorskip("vit_hierarchical")
    model = create_model("cvt")
    learner = vit_ssl.EsViTTrainer(
        model, image_size=32, hidden_layer="layers", projection_hidden_size=16, projection_layers=2, num_classes_K=32
    )
    loss = learner(torch.randn(2, 3, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and model.stages[0].downsample[0].module.weight.grad.abs().sum() > 0
    assert learner.student.region_head is not None
