"""The ``vit`` command line: list, describe and inspect the models of every installed plugin, and train,
benchmark, convert, export and draw attention with them.

Only the commands that build models import torch; ``vit --help``, ``vit list`` and ``vit plugins`` read
metadata only.  Errors are one line on stderr and exit code 1: an unknown, ambiguous or unavailable
name, a filter of ``vit list`` that matches nothing, a target that does not import or a configuration
that does not build.  The application is :data:`vit_core.cli.app.app`, one module per command.
"""

from vit_core.cli.app import app, main

__all__ = ["app", "main"]
