"""``--channels-last``: convolution weights and image batches in channels-last (NHWC) memory order.

oneDNN on CPU and cuDNN on CUDA run their fastest convolution and pooling kernels in that order; a model
with a convolutional stem (CCT, LeViT, CvT, PiT) trains faster, the values are the same.  Only 4-D tensors
change order: 3-D video convolutions and token sequences stay as they are.  ``Tensor.to(memory_format=)``
rather than ``contiguous``: a one-channel tensor is contiguous in both orders, and only ``to`` gives it the
channels-last strides the kernels look for (a grey image's first convolution otherwise comes out NCHW and its
max pooling runs 7x slower).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with every 4-D parameter and buffer in channels-last order, in place (before the optimizer
    is made, so its state follows)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.ndim == 4:
            tensor.data = tensor.data.to(memory_format=torch.channels_last)
    return module


def batch_layout(x: Tensor, channels_last: bool) -> Tensor:
    """An image batch in channels-last order when asked and it is one ``(batch, channels, height, width)``
    tensor; anything else unchanged."""
    if channels_last and isinstance(x, Tensor) and x.ndim == 4:
        return x.to(memory_format=torch.channels_last)
    return x
