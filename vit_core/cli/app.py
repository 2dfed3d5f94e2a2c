"""The ``vit`` application: every command registered on one Typer app, with help readable at 80 columns.

Each command lives in its own module (:mod:`~vit_core.cli.catalog`: list and plugins,
:mod:`~vit_core.cli.describe`, :mod:`~vit_core.cli.train`, :mod:`~vit_core.cli.predict`,
:mod:`~vit_core.cli.evaluate`, :mod:`~vit_core.cli.data`, :mod:`~vit_core.cli.convert`,
:mod:`~vit_core.cli.bench`, :mod:`~vit_core.cli.attention`, :mod:`~vit_core.cli.export`,
:mod:`~vit_core.cli.new_plugin`); the shared ``--set`` parsing is :mod:`~vit_core.cli.options`, the
printing :mod:`~vit_core.cli.output`.  Help is click's plain layout (``rich_markup_mode=None``):
option names are never cut, and a long one puts its help on the next line.
"""

from __future__ import annotations

import typer

from vit_core.cli.attention import attention
from vit_core.cli.bench import bench
from vit_core.cli.catalog import list_command, plugins
from vit_core.cli.convert import convert
from vit_core.cli.data import data_app
from vit_core.cli.describe import describe
from vit_core.cli.evaluate import evaluate
from vit_core.cli.export import export_command
from vit_core.cli.new_plugin import new_plugin
from vit_core.cli.predict import predict
from vit_core.cli.train import train

app = typer.Typer(
    name="vit",
    help="Vision transformers: list, describe and inspect the models of every installed plugin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("list", short_help="Every registered model, trainer, backend and preset.")(list_command)
app.command(short_help="One entry's paper, signature, size, presets and example.")(describe)
app.command(short_help="Installed plugins, what each registers, their errors.")(plugins)
app.command("new-plugin", short_help="Write a ready-to-install plugin from the template.")(new_plugin)
app.command(short_help="Train a model, or a trainer around an encoder.")(train)
app.command(short_help="Top-k classes of images by a trained classifier.")(predict)
app.command("eval", short_help="Accuracy, per class and confusion, on a labelled source.")(evaluate)
app.add_typer(data_app, name="data", short_help="Prepare image data (WebDataset shards).")
app.command(context_settings={"help_option_names": []}, short_help="A vit-pytorch state dict into a saved model.")(
    convert
)
app.command(short_help="Parameters, FLOPs, images/s and memory side by side.")(bench)
app.command(short_help="Draw where the class token attends over an image.")(attention)
app.command("export", short_help="Export to ONNX or torch.export (.pt2).")(export_command)


def main() -> None:
    """The ``vit`` console script."""
    app()
