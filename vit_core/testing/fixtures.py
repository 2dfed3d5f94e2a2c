"""pytest fixtures shared by vit-core's tests and every plugin's: ``from vit_core.testing.fixtures import *`` in a
``conftest.py``.

Importing this module puts the kit's torchvision stand-in on ``sys.path`` where torchvision is not installed
(the vit-pytorch oracle imports it at module level; torchvision's wheels do not import beside every torch
build), seeds torch before each test, and keeps ``vit train`` / ``vit bench`` run inside the test process from
changing that process's malloc.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

__all__ = ["oracle", "retained_heap_calls", "seed"]

STAND_IN = Path(__file__).parent / "stubs"
"""The folder holding the torchvision stand-in (only what the oracle's imports touch)."""

if importlib.util.find_spec("torchvision") is None and str(STAND_IN) not in sys.path:
    sys.path.insert(0, str(STAND_IN))


@pytest.fixture(autouse=True)
def seed() -> None:
    """Every test starts from ``torch.manual_seed(0)``."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def retained_heap_calls(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """``vit train`` and ``vit bench`` run in this process here: their call to
    :func:`vit_core.runtime.allocator.retain_freed_memory` is recorded instead of changing the test process's
    malloc (tests/test_allocator.py runs the real one in fresh processes)."""
    from vit_core.runtime import allocator

    calls: list[None] = []
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda: calls.append(None) or False)
    return calls


@pytest.fixture
def oracle():
    """The vit-pytorch package (test-only oracle); skipped where it is not installed."""
    return pytest.importorskip("vit_pytorch")
