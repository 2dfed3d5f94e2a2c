"""The checks of a backend (``kind="backend"``, a ``transformer=`` trunk) beyond its metadata and
gradients: ``shape``, ``bad-input`` and ``plugs-into``."""

from __future__ import annotations

import torch

from vit_core.testing.subject import (
    Subject,
    build,
    describe,
    expect_width,
    names_the_input,
    num_classes_of,
    run_forward,
)


def check_shape(s: Subject) -> None:
    """``(batch, tokens, dim)`` in, the same shape out, finite."""
    backend = build(s, "shape").eval()
    x = s.example()
    with torch.no_grad():
        out = run_forward(s, "shape", backend, x)
    if out.shape != x.shape:
        raise s.fail(
            "shape", f"a backend maps (batch, tokens, dim) to the same shape: {tuple(x.shape)} gave {tuple(out.shape)}"
        )
    if not torch.isfinite(out).all():
        raise s.fail("shape", "output holds NaN or inf")


def check_backend_input(s: Subject) -> None:
    """A wrong ``dim`` and a wrong rank raise ``ValueError``/``TypeError`` naming ``dim`` or the shape."""
    backend = build(s, "bad-input").eval()
    tokens, dim = s.info.input_shape
    cases = [
        (f"dim {dim + 1} instead of {dim}", torch.randn(s.batch, tokens, dim + 1)),
        ("no batch dimension (wrong rank)", torch.randn(tokens, dim)),
    ]
    for what, x in cases:
        try:
            with torch.no_grad():
                backend(x)
        except (ValueError, TypeError) as exc:
            if names_the_input(str(exc), "dim", x):
                continue
            raise s.fail(
                "bad-input", f"input with {what} raised {describe(exc)}, which names neither dim nor {tuple(x.shape)}"
            ) from exc
        except Exception as exc:
            raise s.fail(
                "bad-input",
                f"input with {what} raised a bare {describe(exc)}; check the input and raise "
                "ValueError/TypeError naming dim and the shape received (see vit_core.validation.check_tensor)",
            ) from exc
        raise s.fail(
            "bad-input", f"input with {what} ({tuple(x.shape)}) was accepted; it must raise ValueError/TypeError"
        )


def check_plugs_into(s: Subject) -> None:
    """``plugs_into``'s model built with ``transformer=`` the backend classifies its example input."""
    host = s.info.plugs_into
    if host is None:
        raise s.fail("plugs-into", "a backend must name the model it plugs into (plugs_into=Component(...))")
    reg = s.active_registry
    backend = build(s, "plugs-into")
    try:
        model = reg.create(host.model, **host.config, transformer=backend).eval()
        x = reg.info(host.model).example_input(s.batch)
    except Exception as exc:
        raise s.fail(
            "plugs-into",
            f"building {host} with transformer=<this backend> raised {describe(exc)}; plugs_into must give a "
            "configuration whose dim and token count fit the backend's default configuration",
        ) from exc
    with torch.no_grad():
        out = run_forward(s, "plugs-into", model, x)
    expect_width(s, "plugs-into", out, num_classes_of(s, "plugs-into", model), f"{host} with transformer=")
