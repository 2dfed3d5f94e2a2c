"""A minimal stand-in for torchvision, so the vit-pytorch oracle imports beside a CPU torch.

vit-pytorch's package ``__init__`` imports its DINO module, which imports
``torchvision.transforms`` at import time; the parity tests never call those transforms.
"""
