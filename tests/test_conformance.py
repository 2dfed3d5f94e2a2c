"""Every model registered by the installed plugins (core included) passes vit-core's conformance kit."""

from __future__ import annotations

from vit_core.testing import check_model, parametrize_models


@parametrize_models()
def test_conformance(model_name: str) -> None:
    check_model(model_name)
