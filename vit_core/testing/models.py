"""The checks of a model's behaviour (``kind="model"``): ``forward``, ``interface``, ``batch-independence``,
``gradients`` (backends pass it too), ``bad-input`` and ``overrides``."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.models.base import VisionModel
from vit_core.registry import ModelInfo
from vit_core.testing.subject import (
    GRADIENT_PASSES,
    Subject,
    build,
    describe,
    expect_width,
    names_the_input,
    num_classes_of,
    run_forward,
    shape_of,
    shapes_of,
)

INTERFACE = ("forward_features", "forward_head", "reset_classifier")
"""The methods of the VisionModel interface the ``interface`` check calls."""

BATCH_TOLERANCE = 1e-5
"""Absolute and relative tolerance of the ``batch-independence`` check."""


def check_forward(s: Subject) -> None:
    """The default configuration gives a finite ``(batch, num_classes)`` output on the example input."""
    model = build(s, "forward").eval()
    with torch.no_grad():
        out = run_forward(s, "forward", model, s.example())
    expect_width(s, "forward", out, num_classes_of(s, "forward", model), "default configuration")
    if not torch.isfinite(out).all():
        raise s.fail("forward", "output holds NaN or inf")


def check_interface(s: Subject) -> None:
    """``forward == forward_head(forward_features)``, ``pre_logits`` gives ``(batch, num_features)``,
    ``reset_classifier`` changes the output width."""
    model = build(s, "interface").eval()
    missing = [m for m in INTERFACE if not callable(getattr(model, m, None))]
    if not isinstance(getattr(model, "num_features", None), int):
        missing.append("num_features (int)")
    if missing:
        raise s.fail("interface", f"missing VisionModel members: {', '.join(missing)}")
    x = s.example()
    with torch.no_grad():
        out = run_forward(s, "interface", model, x)
        try:
            features = model.forward_features(x)
            staged = model.forward_head(features)
            pooled = model.forward_head(features, pre_logits=True)
        except Exception as exc:
            raise s.fail("interface", f"forward_features/forward_head raised {describe(exc)}") from exc
    if not isinstance(staged, Tensor) or staged.shape != out.shape or not torch.allclose(staged, out, atol=1e-5):
        raise s.fail("interface", "forward(x) differs from forward_head(forward_features(x))")
    if not isinstance(pooled, Tensor) or tuple(pooled.shape) != (s.batch, model.num_features):
        raise s.fail(
            "interface",
            f"forward_head(features, pre_logits=True) must give (batch, num_features) = "
            f"{(s.batch, model.num_features)}, got {shape_of(pooled)}",
        )
    width = num_classes_of(s, "interface", model) + 3
    try:
        model.reset_classifier(width)
    except Exception as exc:
        raise s.fail("interface", f"reset_classifier({width}) raised {describe(exc)}") from exc
    with torch.no_grad():
        out = run_forward(s, "interface", model, x)
    expect_width(s, "interface", out, width, f"after reset_classifier({width})")


def check_batch_independence(s: Subject) -> None:
    """In eval mode ``model(x)[:1]`` equals ``model(x[:1])`` within :data:`BATCH_TOLERANCE`."""
    model = build(s, "batch-independence").eval()
    x = s.info.example_input(max(2, s.batch))
    with torch.no_grad():
        whole = run_forward(s, "batch-independence", model, x)[:1]
        alone = run_forward(s, "batch-independence", model, x[:1])
    if whole.shape != alone.shape or not torch.allclose(whole, alone, atol=BATCH_TOLERANCE, rtol=BATCH_TOLERANCE):
        detail = (
            f"max abs difference {(whole - alone).abs().max().item():.2e}"
            if whole.shape == alone.shape
            else f"shapes {tuple(whole.shape)} and {tuple(alone.shape)}"
        )
        raise s.fail(
            "batch-independence",
            f"in eval mode, model(x)[:1] differs from model(x[:1]) ({detail}, tolerance {BATCH_TOLERANCE}): "
            "an example's output depends on the rest of its batch (batch statistics, a norm or pooling "
            "over the batch axis, tokens mixed across examples)",
        )


def check_gradients(s: Subject) -> None:
    """Accumulated training-mode backward passes reach every trainable parameter (but those the model
    declares in ``parameters_outside_forward``) with a gradient that is not all zeros."""
    model = build(s, "gradients").train()
    for _ in range(GRADIENT_PASSES):
        out = run_forward(s, "gradients", model, s.example())
        (out * torch.randn_like(out)).sum().backward()
    outside = tuple((model if isinstance(model, VisionModel) else VisionModel).parameters_outside_forward)
    trainable = [
        (name, p) for name, p in model.named_parameters() if p.requires_grad and not name.startswith(outside or ("\0",))
    ]
    dead = [name for name, p in trainable if p.grad is None]
    zero = [name for name, p in trainable if p.grad is not None and not p.grad.any()]
    if dead or zero:
        parts = [f"never used in forward: {', '.join(dead)}"] if dead else []
        parts += [f"all-zero gradient: {', '.join(zero)}"] if zero else []
        raise s.fail(
            "gradients",
            f"{len(dead) + len(zero)} of {len(trainable)} trainable parameters get no gradient "
            f"({'; '.join(parts)}); use them, or set requires_grad=False / register a buffer",
        )


def _bad_inputs(info: ModelInfo, batch: int) -> list[tuple[str, Any]]:
    channels = info.input_shape[0]
    good = torch.randn(info.input_shape)
    wrong_channels = torch.randn(channels + 1, *info.input_shape[1:])
    if info.input_kind == "image-list":
        return [
            (f"an image with {channels + 1} channels instead of {channels}", [good, wrong_channels]),
            ("an image with an extra leading dimension (wrong rank)", [good, good.unsqueeze(0)]),
        ]
    return [
        (f"{channels + 1} channels instead of {channels}", torch.stack([wrong_channels] * batch)),
        ("no batch dimension (wrong rank)", good),
    ]


def _input_argument(model: nn.Module) -> str | None:
    """The name of ``model.forward``'s first argument (``img``, ``video``, ...), if it has one."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    return parameters[0].name if parameters and parameters[0].kind != parameters[0].VAR_POSITIONAL else None


def check_bad_input(s: Subject) -> None:
    """Wrong channels and wrong rank raise ``ValueError``/``TypeError`` naming the input argument or the shape."""
    model = build(s, "bad-input").eval()
    argument = _input_argument(model)
    for what, x in _bad_inputs(s.info, s.batch):
        try:
            with torch.no_grad():
                model(x)
        except (ValueError, TypeError) as exc:
            if names_the_input(str(exc), argument, x):
                continue
            shapes = " or ".join(map(str, shapes_of(x))) or shape_of(x)
            raise s.fail(
                "bad-input",
                f"input with {what} raised {describe(exc)}, which names neither the argument "
                f"{argument!r} nor the received shape {shapes}; validate the input and say which argument "
                "is wrong, what it got and what was expected (see vit_core.validation.check_tensor)",
            ) from exc
        except Exception as exc:
            raise s.fail(
                "bad-input",
                f"input with {what} raised a bare {describe(exc)}; validate the input and "
                "raise ValueError/TypeError naming the argument and the expected shape "
                "(see vit_core.validation.check_tensor)",
            ) from exc
        raise s.fail("bad-input", f"input with {what} ({shape_of(x)}) was accepted; it must raise ValueError/TypeError")


def check_overrides(s: Subject) -> None:
    """``create_model(name, num_classes=k)`` builds a model of output width ``k``."""
    if "num_classes" not in s.info.signature().parameters:
        raise s.fail("overrides", "the constructor takes no num_classes argument")
    width = num_classes_of(s, "overrides", build(s, "overrides")) + 5
    model = build(s, "overrides", num_classes=width).eval()
    if getattr(model, "num_classes", None) != width:
        raise s.fail(
            "overrides",
            f"create_model(..., num_classes={width}) built a model with "
            f"num_classes={getattr(model, 'num_classes', None)!r}",
        )
    with torch.no_grad():
        out = run_forward(s, "overrides", model, s.example())
    expect_width(s, "overrides", out, width, f"create_model(..., num_classes={width})")
