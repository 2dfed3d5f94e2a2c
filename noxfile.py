"""Sessions: tests, lint, build (wheels of every distribution), plugin_install, bench.

Every session installs ``torch==2.13.0`` first through ``constraints.txt``.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("plugins/*/pyproject.toml"))
CONSTRAINTS = ("-c", "constraints.txt")
ORACLE = "vit-pytorch==1.26.11"  # test-only oracle; installed without its torchvision dependency
LEGACY_ORACLE = "vit-pytorch==1.16.0"  # vit-ssl's MAE/SimMIM/MPP parity (the latest release cannot run them)
LEGACY_PLUGINS = {"plugins/vit-ssl"}  # the plugins whose tests need LEGACY_ORACLE

nox.options.sessions = ["lint", "tests", "plugin_install"]
nox.options.default_venv_backend = "venv"


def install_ecosystem(session: nox.Session, editable: bool = True) -> None:
    session.install(*CONSTRAINTS, "torch==2.13.0")
    targets = [".", *PLUGINS]
    if editable:
        targets = [arg for t in targets for arg in ("-e", t)]
    session.install(*CONSTRAINTS, *targets)


def install_oracles(session: nox.Session, legacy: bool = True) -> dict[str, str]:
    """Install the vit-pytorch oracle (``--no-deps``: its torchvision would pull another torch build) and, with
    ``legacy``, vit-pytorch 1.16.0 in a folder beside it; returns the environment that points the tests there."""
    session.install("--no-deps", ORACLE)
    if not legacy:
        return {}
    folder = Path(session.create_tmp()).resolve() / "vit-pytorch-1.16.0"
    session.install("--no-deps", "--target", str(folder), LEGACY_ORACLE)
    return {"VIT_PYTORCH_1_16": str(folder)}


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite (tests/ and every plugins/NAME/tests), oracle parity included."""
    install_ecosystem(session)
    session.install(
        *CONSTRAINTS,
        "pytest>=8",
        "scikit-learn",
        "pillow",
        "webdataset",
        "packaging",
        "build",
        "setuptools>=68",
        "wheel",
    )
    session.install(*CONSTRAINTS, "matplotlib")  # the benchmark report's plot, which the benchmark tests draw
    session.install(*CONSTRAINTS, "onnx", "onnxscript", "onnxruntime")  # the export tests (vit-core[export])
    # load_pretrained's oracles (tests/test_pretrained.py): timm without its deps (torchvision is the kit's
    # stand-in) plus its small ones, and transformers (pulls no torch; checked with pip install --dry-run)
    session.install(*CONSTRAINTS, "--no-deps", "timm")
    session.install(*CONSTRAINTS, "huggingface_hub", "pyyaml", "safetensors", "transformers")
    env = install_oracles(session)
    session.run("pytest", "-ra", *session.posargs, env=env)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def build(session: nox.Session) -> None:
    """Wheels and sdists of vit-core and every plugin, into dist/."""
    session.install("build")
    for target in [".", *PLUGINS]:
        session.run("python", "-m", "build", "--outdir", str(ROOT / "dist"), target)


@nox.session(python="3.11")
@nox.parametrize("plugin", PLUGINS)
def plugin_install(session: nox.Session, plugin: str) -> None:
    """One plugin installs on its own next to vit-core (not editable), `vit list` shows its models, and its own
    tests pass with nothing more than its ``[test]`` extra and the vit-pytorch oracle."""
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(*CONSTRAINTS, ".", f"./{plugin}[test]")
    listing = session.run("vit", "list", "--json", silent=True)
    session.run("vit", "plugins")
    name = Path(plugin).name
    if f'"distribution": "{name}"' not in listing:
        session.error(f"`vit list` shows no model of {name}")
    env = install_oracles(session, legacy=plugin in LEGACY_PLUGINS)
    # pythonpath cleared: the tests import the installed vit-core, not the checkout's
    session.run("pytest", "-ra", "-o", "pythonpath=", f"{plugin}/tests", *session.posargs, env=env)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks against vit-pytorch and timm; by default regenerates docs/benchmarks.md, its JSON
    and its plot (other arguments after ``--`` go to ``python -m benchmarks``)."""
    install_ecosystem(session)
    session.install("--no-deps", ORACLE, "timm")
    session.install(*CONSTRAINTS, "huggingface_hub", "safetensors", "pyyaml", "psutil", "matplotlib")
    session.run("python", "-m", "benchmarks", *(session.posargs or ["--write-docs", "docs"]))
