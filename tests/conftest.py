"""Shared fixtures: a stand-in torchvision for the vit-pytorch oracle, and seeding."""

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


@pytest.fixture
def oracle():
    """The vit-pytorch package (test-only oracle); skipped where it is not installed."""
    return pytest.importorskip("vit_pytorch")
