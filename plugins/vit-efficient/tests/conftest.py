"""The kit's shared fixtures (torchvision stand-in, seeding, malloc left as it is) for vit-efficient's tests."""

from vit_core.testing.fixtures import *  # noqa: F403
