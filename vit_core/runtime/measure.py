"""Measuring a built model: its parameter count, the FLOPs of one forward pass, and both as short numbers.

Importing this module does not import torch (``vit list`` formats with :func:`human`).
"""

from __future__ import annotations

import math
from typing import Any


def count_parameters(model: Any) -> int:
    """The number of parameters of ``model`` (trainable or not; on any device, the meta device included)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: Any, *args: Any) -> int:
    """FLOPs of one forward pass on ``args`` (``torch.utils.flop_counter``).

    Attention runs on SDPA's math backend while counting, so that its matrix products are counted on
    every device (the fused CPU kernel has no FLOP formula and would count as zero).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(*args)
    return int(counter.get_total_flops())


def human(n: float) -> str:
    """``n`` in three significant digits with a K, M, G or T suffix (``"86.6M"``); ``"0"`` for zero or less."""
    if n <= 0:
        return "0"
    exp = min(int(math.log10(n) // 3), 4)
    return f"{n / 10 ** (3 * exp):.3g}{['', 'K', 'M', 'G', 'T'][exp]}"
