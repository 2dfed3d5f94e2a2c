"""The kit's shared fixtures (torchvision stand-in, seeding, malloc left as it is) for vit-core's own tests."""

from vit_core.testing.fixtures import *  # noqa: F403
