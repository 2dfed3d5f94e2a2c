"""``vit convert``: a vit-pytorch state dict into a folder :func:`vit_core.load_model` reads."""

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
    name: Annotated[str, typer.Argument(help="A registered model with an importer (listed below).", metavar="NAME")],
    state_dict: Annotated[
        str,
        typer.Argument(help="A vit-pytorch state dict file: torch.save(model.state_dict()).", metavar="STATE_DICT"),
    ],
    out_dir: Annotated[
        str, typer.Argument(help="The folder to write (config.json and model.safetensors).", metavar="OUT_DIR")
    ],
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="key=value constructor argument of the reference model (a Python literal or JSON value, e.g. "
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
    """Convert a vit-pytorch state dict into a folder vit_core.load_model reads.

    The file is read with torch.load(weights_only=True) (tensors only: never a pickle that runs code),
    imported through the model's registered importer, checked tensor by tensor, and saved with
    vit_core.save_model.
    """
    from vit_core.interop.saving import convert_reference

    try:
        folder = convert_reference(name, state_dict, out_dir, **argument_sets(settings or []))
    except ModelLookupError as exc:
        fail(str(exc))
    except (OptionError, ValueError, TypeError) as exc:
        fail(str(exc))
    console.print(f"wrote {folder} ({name} from {state_dict})", markup=False, highlight=False)
