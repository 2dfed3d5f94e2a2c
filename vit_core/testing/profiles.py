"""The checks of each kind, by name and in the order :func:`vit_core.testing.check_model` runs them."""

from __future__ import annotations

from collections.abc import Callable

from vit_core.testing.backends import check_backend_input, check_plugs_into, check_shape
from vit_core.testing.declarations import check_declarations
from vit_core.testing.devices import check_devices
from vit_core.testing.features import check_encoder_protocol, check_intermediates
from vit_core.testing.metadata import check_listing, check_metadata
from vit_core.testing.models import (
    check_bad_input,
    check_batch_independence,
    check_forward,
    check_gradients,
    check_interface,
    check_overrides,
)
from vit_core.testing.parameter_groups import check_parameter_groups
from vit_core.testing.saving import check_export_model, check_save_load
from vit_core.testing.subject import Subject
from vit_core.testing.trainers import check_loss, check_trainer_gradients

Check = Callable[[Subject], None]
"""A check: raises :class:`~vit_core.testing.ConformanceError` when the subject fails it."""

CHECKS: dict[str, Check] = {
    "metadata": check_metadata,
    "listing": check_listing,
    "declarations": check_declarations,
    "parameter-groups": check_parameter_groups,
    "forward": check_forward,
    "interface": check_interface,
    "batch-independence": check_batch_independence,
    "intermediates": check_intermediates,
    "encoder-protocol": check_encoder_protocol,
    "gradients": check_gradients,
    "bad-input": check_bad_input,
    "overrides": check_overrides,
    "save-load": check_save_load,
    "devices": check_devices,
}
"""Every check of a model by name, in the order :func:`~vit_core.testing.check_model` runs them."""

TRAINER_CHECKS: dict[str, Check] = {
    "metadata": check_metadata,
    "listing": check_listing,
    "loss": check_loss,
    "gradients": check_trainer_gradients,
    "devices": check_devices,
}
"""The checks of a trainer (``kind="trainer"``)."""

BACKEND_CHECKS: dict[str, Check] = {
    "metadata": check_metadata,
    "listing": check_listing,
    "shape": check_shape,
    "gradients": check_gradients,
    "bad-input": check_backend_input,
    "plugs-into": check_plugs_into,
    "devices": check_devices,
}
"""The checks of a backend (``kind="backend"``)."""

OPTIONAL_CHECKS: dict[str, Check] = {"export": check_export_model}
"""Checks run on request: ``check_model(name, export=True)`` (models and backends; trainers are training-time
wrappers, not deployed)."""

PROFILES: dict[str, dict[str, Check]] = {
    "model": CHECKS,
    "trainer": TRAINER_CHECKS,
    "backend": BACKEND_CHECKS,
}
"""The checks of each kind."""
