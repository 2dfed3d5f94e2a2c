"""``vit export``: a registered model or backend as a ``torch.export`` program (``.pt2``) or an ONNX file."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.options import SET_METAVAR, OptionError, argument_sets
from vit_core.cli.output import console, fail
from vit_core.registry import ModelLookupError, get_registry

EXPORT_FORMATS = ("onnx", "pt2")


def export_command(
    name: Annotated[str, typer.Argument(help="A registered model or backend (see `vit list`).", metavar="NAME")],
    out: Annotated[str, typer.Option("--out", "-o", help="The file to write (.onnx or .pt2).", metavar="FILE")],
    format_: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="onnx (onnxruntime) or pt2 (torch.export); default: from --out's suffix.",
            metavar="FORMAT",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option("--from", help="A folder written by vit_core.save_model (default: fresh weights).", metavar="DIR"),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="key=value constructor argument (a Python literal or JSON value); repeatable.",
            metavar=SET_METAVAR,
        ),
    ] = None,
) -> None:
    """Export a model with a dynamic batch axis: torch.export (.pt2, torch.export.load reads it) or ONNX.

    The model is built from its default configuration (updated by --set) or loaded with --from, and
    traced on an input of the shape its configuration takes (channels, frames, image size: the saved
    configuration with --from, a resized model's included). An ONNX file's input is named image
    (video for a video model, tokens for a backend) and its output logits (features for a backend),
    its first axis batch. ONNX needs pip install 'vit-core[export]'.
    """
    from pathlib import Path

    import torch

    from vit_core.interop.export import ExportError, export_onnx, export_program, onnx_names, save_program
    from vit_core.training.build import sample_shape

    suffix = Path(out).suffix.lstrip(".")
    format_ = format_ or (suffix if suffix in EXPORT_FORMATS else "onnx")
    if format_ not in EXPORT_FORMATS:
        fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format_!r}")
    if suffix in EXPORT_FORMATS and suffix != format_:
        fail(f"--out {out} names a .{suffix} file but --format is {format_}: drop --format or change the suffix")
    if weights is not None and settings:
        fail(
            "--set configures a fresh model; --from loads the saved configuration (resize a saved model with "
            "set_input_size before save_model)"
        )
    registry = get_registry()
    try:
        info = registry.info(name)
        if info.kind == "trainer":
            fail(f"{name!r} is a trainer (a training-time wrapper returning a loss); export the model it trains")
        if weights is not None:
            from vit_core.interop.saving import load_model

            model = load_model(weights)
            saved = registry.info_for_class(type(model))
            if saved.target != info.target:
                fail(f"--from {weights} holds {saved.name!r}, not {name!r}; run vit export {saved.name} --from ...")
            info, config = saved, getattr(model, "init_config", {})
        else:
            config = {**info.default_config, **argument_sets(settings or [])}
            model = registry.create(name, **config)
        shape = sample_shape(info, config)
        example = [torch.randn(shape) for _ in range(2)] if info.input_kind == "image-list" else torch.randn(2, *shape)
        program = export_program(model.eval(), example)
        if format_ == "pt2":
            path, names = save_program(program, out), ""
        else:
            input_name, output_name = onnx_names(info.kind, info.input_kind)
            path = export_onnx(program, example, out, input_name=input_name, output_name=output_name)
            names = f"; input {input_name!r} (batch, {', '.join(map(str, shape))}), output {output_name!r}"
    except ModelLookupError as exc:
        fail(str(exc))
    except OptionError as exc:
        fail(str(exc))
    except (ExportError, ValueError, TypeError, ImportError) as exc:
        fail(f"{type(exc).__name__}: {exc}" if isinstance(exc, ImportError) else str(exc))
    console.print(f"wrote {path} ({name}, {format_}, dynamic batch axis{names})", markup=False, highlight=False)
