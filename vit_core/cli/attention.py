"""``vit attention``: where a model's class token attends, drawn over an image (:mod:`vit_core.tools.attention_map`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vit_core.cli.options import SET_METAVAR, OptionError, parse_sets
from vit_core.cli.output import console, errors, fail
from vit_core.registry import ModelLookupError, get_registry


def attention(
    name: Annotated[
        str, typer.Argument(help="A registered ViT-like model (patches and a class token).", metavar="NAME")
    ],
    image: Annotated[str, typer.Option(help="The input image (any format Pillow reads).", metavar="FILE")],
    out: Annotated[
        str,
        typer.Option(
            help="The PNG to write (the part of the image the model sees, at its resolution).", metavar="FILE"
        ),
    ],
    checkpoint: Annotated[
        str | None, typer.Option(help="Weights: a save_model folder or a `vit train` run folder.", metavar="DIR")
    ] = None,
    method: Annotated[str, typer.Option(help="rollout (through every layer) or last (the last layer).")] = "rollout",
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Model argument key=value (no checkpoint).", metavar=SET_METAVAR)
    ] = None,
) -> None:
    """Draw where the model's class token attends (attention rollout or the last layer) over the image."""

    from vit_core.interop.saving import CONFIG_FILE, load_model, model_folder
    from vit_core.tools.attention_map import draw

    registry = get_registry()
    try:
        info = registry.info(name)
        if checkpoint is not None and sets:
            fail("--set configures a fresh model; --checkpoint loads the saved configuration (drop --set)")
        if checkpoint is None:
            errors.print("[yellow]no --checkpoint: drawing the attention of untrained (random) weights[/yellow]")
            model = registry.create(name, **parse_sets(sets or []))
        else:
            folder = model_folder(checkpoint)
            if not (folder / CONFIG_FILE).is_file():
                fail(f"--checkpoint {checkpoint}: no {CONFIG_FILE} (expected a vit_core.save_model folder)")
            saved = json.loads((folder / CONFIG_FILE).read_text()).get("model")
            if not registry.saved_as(saved, info.qualified_name):
                fail(f"--checkpoint {checkpoint}: the checkpoint is of model {saved!r}, not {name!r}")
            model = load_model(folder)
        heat = draw(model, image, out, method)
    except ModelLookupError as exc:
        fail(str(exc))
    except OptionError as exc:
        fail(str(exc))
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
    peak = divmod(int(heat.flatten().argmax()), heat.shape[1])
    console.print(f"wrote {out}: {method} attention over a {tuple(heat.shape)} patch grid, peak at patch {peak}")
