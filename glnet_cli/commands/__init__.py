"""One module per command; each exposes a click command, listed here in help order."""

from glnet_cli.commands.convert_reference import convert_reference_command

COMMANDS = [convert_reference_command]
