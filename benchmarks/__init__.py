"""Benchmarks of vit against vit-pytorch and timm; run with ``nox -s bench`` or ``python -m benchmarks``."""
