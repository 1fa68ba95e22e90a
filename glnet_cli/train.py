"""The import path the README has always quoted.

The code lives in :mod:`glnet_cli.training.train`.
"""

from glnet_cli.training.train import (  # noqa: F401
    TrainConfig, TrainResult, train)
