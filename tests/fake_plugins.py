"""Fake installed plugins for the registry and CLI tests: a module plus a ``*.dist-info`` with a real
entry point, written into a directory that goes on ``sys.path`` (in-process) or ``PYTHONPATH`` (a
subprocess running the real ``vit`` command line).  No pip, so installing a dozen takes milliseconds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

HEADER = """
from vit_core.hookspecs import hookimpl
from vit_core.registry import ModelInfo

TINY = dict(image_size=16, patch_size=8, num_classes=3, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8)


def toy(name, target="vit_core.models.simple_vit:SimpleViT", **changes):
    fields = dict(
        name=name, target=target, family="toy", paper_title="A toy", paper_url="https://example.org/toy",
        summary="A toy model.", input_kind="image", input_shape=(3, 16, 16), default_config=TINY,
        citation="@misc{toy}", example="create_model('toy')",
    )
    return ModelInfo(**{**fields, **changes})
"""

API = "\n@hookimpl\ndef vit_api_version():\n    return {api}\n"


def registering(*models: str, api: int = 2, extra: str = "") -> str:
    """A plugin source registering ``toy(...)`` expressions (e.g. ``"toy('a-vit')"``)."""
    body = f"\n@hookimpl\ndef vit_register_models():\n    return [{', '.join(models)}]\n"
    return HEADER + API.format(api=api) + body + extra


def install_fake(site: Path, name: str, source: str, dist: str | None = None, module: str | None = None) -> str:
    """Write module ``module`` (default ``fake_<name>_plugin``) and the distribution ``dist`` (default
    ``vit-fake-<name>``, version 1.2.3) whose ``vit_core.plugins`` entry point ``name`` names it; return
    the module name."""
    module = module or f"fake_{name.replace('-', '_')}_plugin"
    dist = dist or f"vit-fake-{name}"
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[vit_core.plugins]\n{name} = {module}\n")
    return module
