"""Commands the docs give verbatim are the ones the benchmarks run (a doc can never drift from the measured run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fenced_after(heading: str, text: str) -> str:
    """The first fenced block after the markdown heading ``heading``."""
    section = text.split(f"\n## {heading}\n", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)


def test_the_fashion_mnist_command_is_the_benchmarked_one():
    from benchmarks.fashion_mnist import COMMAND

    documented = fenced_after("Fashion-MNIST", (ROOT / "docs" / "training.md").read_text())
    assert shlex.split(documented) == list(COMMAND)
    assert "folder:FOLDER" in COMMAND


def test_the_fashion_mnist_command_parses(tmp_path):
    """Every flag of the documented command is one `vit train` takes (a renamed flag fails here, not in the docs)."""
    from typer.testing import CliRunner

    from benchmarks.fashion_mnist import COMMAND
    from vit_core.cli import app

    args = [a.replace("FOLDER", str(tmp_path / "missing")) for a in COMMAND[1:]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "missing" in result.stderr and "No such option" not in result.output
