"""One module per command; each exposes a click command, listed here in help order."""

from glnet_cli.commands.convert_reference import convert_reference_command
from glnet_cli.commands.evaluate import evaluate_command
from glnet_cli.commands.info import info_command
from glnet_cli.commands.segment import segment_command
from glnet_cli.commands.train import train_command
from glnet_cli.commands.vectorize import vectorize_command

COMMANDS = [segment_command, convert_reference_command, evaluate_command, vectorize_command,
            train_command, info_command]
