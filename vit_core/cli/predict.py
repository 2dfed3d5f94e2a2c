"""``vit predict``: the top-k classes of image files, by a trained classifier (:mod:`vit_core.tools.inference`)."""

from __future__ import annotations

from typing import Annotated

import typer

from vit_core.cli.output import console, dumps, fail


def predict(
    checkpoint: Annotated[
        str, typer.Argument(help="A `vit train` run folder or a saved model folder.", metavar="RUN_OR_CHECKPOINT")
    ],
    images: Annotated[list[str], typer.Argument(help="Image files (any format Pillow reads).", metavar="IMAGE...")],
    top_k: Annotated[int, typer.Option(help="How many classes to show per image.", metavar="K")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The top-k class names and probabilities of each image, preprocessed as the checkpoint records
    (its pretrained_cfg: input size, resize, crop, mean and std)."""
    from vit_core.interop.saving import ModelFileError
    from vit_core.tools.inference import load_classifier, predict

    try:
        model = load_classifier(checkpoint)
        results = predict(model, images, top_k)
    except (ModelFileError, ValueError, TypeError) as exc:
        fail(str(exc))
    if as_json:
        console.print(dumps(results), markup=False, highlight=False, soft_wrap=True)
        return
    for result in results:
        console.print(result["image"], markup=False, highlight=False)
        for rank, entry in enumerate(result["top"], 1):
            console.print(f"  {rank}. {entry['label']:<24} {entry['probability']:.4f}", markup=False, highlight=False)
