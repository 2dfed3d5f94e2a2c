"""Shared fixtures: a stand-in torchvision for the vit-pytorch oracle, seeding, and this process's malloc left
as it is."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

STUBS = Path(__file__).parent / "stubs"

if importlib.util.find_spec("torchvision") is None:
    sys.path.insert(0, str(STUBS))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def retained_heap_calls(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """``vit train`` and ``vit bench`` run in this process here: their call to
    :func:`vit_core.allocator.retain_freed_memory` is recorded instead of changing the test process's malloc
    (tests/test_allocator.py runs the real one in fresh processes)."""
    from vit_core import allocator

    calls: list[None] = []
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda: calls.append(None) or False)
    return calls


@pytest.fixture
def oracle():
    """The vit-pytorch package (test-only oracle); skipped where it is not installed."""
    return pytest.importorskip("vit_pytorch")
