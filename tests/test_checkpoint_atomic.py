"""Checkpoints are written beside their final name and swapped in whole: a write that dies half-way leaves the
previous checkpoint readable and its own files unread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vit_core import ViT
from vit_core.interop.saving import load_model, model_folder, replaced_folder, save_model

TINY = dict(image_size=16, patch_size=8, num_classes=3, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8)


def test_a_write_that_dies_leaves_the_old_checkpoint(tmp_path: Path) -> None:
    first = ViT(**TINY)
    save_model(first, tmp_path / "checkpoint", name="vit")
    with pytest.raises(RuntimeError, match="killed"), replaced_folder(tmp_path / "checkpoint") as partial:
        (partial / "config.json").write_text("{half")  # what a process killed mid-write leaves
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # the partial folder is gone
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(load_model(tmp_path / "checkpoint")(x), first.eval()(x))


def test_a_partial_folder_left_by_a_killed_process_is_never_read(tmp_path: Path) -> None:
    """SIGKILL gives no chance to clean up: the partial folder stays under a hidden name that nothing reads."""
    save_model(ViT(**TINY), tmp_path / "run" / "checkpoint", name="vit")
    partial = tmp_path / "run" / ".best.partial-abc123"
    partial.mkdir()
    (partial / "config.json").write_text("{half")
    assert model_folder(tmp_path / "run") == tmp_path / "run" / "checkpoint"
    assert load_model(tmp_path / "run").num_classes == 3


def test_swapping_replaces_a_checkpoint_whole(tmp_path: Path) -> None:
    save_model(ViT(**TINY), tmp_path / "checkpoint", name="vit")
    (tmp_path / "checkpoint" / "stale.txt").write_text("from the old checkpoint")
    save_model(ViT(**{**TINY, "num_classes": 5}), tmp_path / "checkpoint", name="vit")
    assert not (tmp_path / "checkpoint" / "stale.txt").exists()
    assert load_model(tmp_path / "checkpoint").num_classes == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
