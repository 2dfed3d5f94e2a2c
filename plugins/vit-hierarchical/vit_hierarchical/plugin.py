"""vit-hierarchical's models, registered through the ``vit_core.plugins`` entry point.

Metadata only: this module does not import torch.  The entries are a table, ``models.json`` beside
this module, one row per model: its class and module, its paper (arXiv id, BibTeX key, authors,
year), a one-line summary, a small default configuration (builds in well under a second), one
sample's shape, a short example, the vit-pytorch class it mirrors (and, for PiT, the loader of timm's
weights, ``timm_importer``, with the timm architectures it takes) and, where timm has the same
architecture, a paper-size preset named after timm's model (``pit-ti``, ``levit-128s``,
``twins-svt-small``, ``maxvit-tiny``, ``nest-tiny``, ``mobilevit-xs``), which the benchmarks use.
JSON arrays are read as tuples, as the constructors' defaults are written.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from vit_core.hookspecs import hookimpl
from vit_core.registry import ModelInfo, Preset

API_VERSION = 2
TABLE = "models.json"


def as_tuples(value: Any) -> Any:
    """A JSON value with every array (nested ones too) as a tuple and every object's values converted alike."""
    if isinstance(value, list):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: as_tuples(v) for k, v in value.items()}
    return value


def arxiv_citation(key: str, title: str, authors: str, arxiv: str, year: int) -> str:
    """BibTeX of an arXiv preprint."""
    return (
        f"@article{{{key},\n  title={{{title}}},\n  author={{{authors}}},\n"
        f"  journal={{arXiv preprint arXiv:{arxiv}}},\n  year={{{year}}}\n}}"
    )


def model_info(name: str, row: dict[str, Any]) -> ModelInfo:
    """The registry entry of one row of the table."""
    paper, module = row["paper"], row["module"]
    return ModelInfo(
        name=name,
        target=f"vit_hierarchical.{module}:{row['class']}",
        family="hierarchical",
        paper_title=paper["title"],
        paper_url=f"https://arxiv.org/abs/{paper['arxiv']}",
        summary=row["summary"],
        input_kind="image",
        default_config=row["config"],
        input_shape=row["input_shape"],
        presets={preset: Preset(**fields) for preset, fields in row.get("presets", {}).items()},
        citation=arxiv_citation(paper["key"], paper["title"], paper["authors"], paper["arxiv"], paper["year"]),
        example="\n".join(row["example"]),
        importer=f"vit_hierarchical.weights:import_{module}",
        reference=row["reference"],
        reference_config=row.get("reference_config", {}),
        timm_importer=row.get("timm_importer"),
        timm_architectures=row.get("timm_architectures", ()),
        channels_arg=row.get("channels_arg", "channels"),
    )


@hookimpl
def vit_api_version() -> int:
    return API_VERSION


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    table = as_tuples(json.loads(resources.files(__package__).joinpath(TABLE).read_text(encoding="utf-8")))
    return [model_info(name, row) for name, row in table.items()]
