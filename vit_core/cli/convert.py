"""``vit convert``: pretrained weights (timm, Hugging Face, vit-core, vit-pytorch) into a folder
:func:`vit_core.load_model` reads."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.options import SET_METAVAR, OptionError, argument_sets
from vit_core.cli.output import console, fail
from vit_core.registry import ModelLookupError


def _convert_help(ctx: typer.Context, value: bool) -> None:
    """``vit convert --help``: the usual help, then the models that register a vit-pytorch importer."""
    if not value or ctx.resilient_parsing:
        return
    from vit_core.interop.saving import importer_models

    console.print(ctx.get_help(), markup=False, highlight=False)
    console.print("\nModels with a vit-pytorch importer (NAME: the reference class it reads):")
    for name, reference in importer_models():
        console.print(f"  {name}: {reference or '-'}", markup=False, highlight=False)
    raise typer.Exit()


def convert(
    source: Annotated[
        str,
        typer.Argument(
            help="A pretrained folder or weights file (timm, Hugging Face, vit-core), or, in the vit-pytorch form "
            "NAME STATE_DICT OUT_DIR, a registered model with an importer (listed below).",
            metavar="SOURCE|NAME",
        ),
    ],
    out_dir: Annotated[
        str,
        typer.Argument(
            help="The folder to write (config.json and model.safetensors); in the vit-pytorch form, the state dict.",
            metavar="OUT_DIR|STATE_DICT",
        ),
    ],
    legacy_out: Annotated[
        str | None,
        typer.Argument(
            help="The folder to write, in the vit-pytorch form NAME STATE_DICT OUT_DIR.", metavar="[OUT_DIR]"
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            help="The architecture of a bare weights file: a timm name (vit_base_patch16_224) or a registered preset.",
        ),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="key=value: for SOURCE, what load_pretrained may override (num_classes, image_size, ...); for the "
            "vit-pytorch form, a constructor argument of the reference model (a Python literal or JSON value, e.g. "
            "--set dim=64 --set image_size=[32,48]); repeat for each argument differing from the default "
            "configuration.",
            metavar=SET_METAVAR,
        ),
    ] = None,
    _help: Annotated[
        bool,
        typer.Option("--help", is_eager=True, expose_value=True, callback=_convert_help, help="Show this and exit."),
    ] = False,
) -> None:
    """Convert pretrained weights into a folder vit_core.load_model reads.

    vit convert SOURCE OUT_DIR reads a timm or Hugging Face folder or file (vit_core.load_pretrained: recognised
    by its files and tensor names, never downloaded); vit convert NAME STATE_DICT OUT_DIR reads a vit-pytorch
    state dict through NAME's importer.  Files are read as safetensors or with torch.load(weights_only=True)
    (never a pickle that runs code), checked tensor by tensor, and saved with vit_core.save_model.
    """
    from vit_core.interop.saving import convert_reference, save_model

    try:
        sets = argument_sets(settings or [])
        if legacy_out is not None:
            if arch is not None:
                raise OptionError("--arch is for vit convert SOURCE OUT_DIR; the vit-pytorch form names the model")
            folder = convert_reference(source, out_dir, legacy_out, **sets)
            described = f"{source} from {out_dir}"
        else:
            from vit_core.interop.pretrained import load_pretrained

            folder = save_model(load_pretrained(source, arch=arch, **sets), out_dir)
            described = f"from {source}"
    except ModelLookupError as exc:
        fail(str(exc))
    except (OptionError, ValueError, TypeError) as exc:
        fail(str(exc))
    console.print(f"wrote {folder} ({described})", markup=False, highlight=False)
