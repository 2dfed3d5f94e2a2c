"""Names vit-pytorch's DINO module touches at import time; calling any of them is an error."""


def _unavailable(*args, **kwargs):
    raise RuntimeError("torchvision is stubbed in the vit test suite")


def __getattr__(name):
    return _unavailable
