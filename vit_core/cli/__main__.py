"""`python -m vit_core.cli` (the form torchrun runs): the `vit` command line."""

from vit_core.cli import main

main()
