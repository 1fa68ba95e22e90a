"""``python -m glnet_cli`` (and ``torchrun -m glnet_cli``) runs the CLI."""

from glnet_cli.cli import main

main()
