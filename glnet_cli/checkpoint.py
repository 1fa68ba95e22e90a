"""The import path the README has always quoted.

The code lives in :mod:`glnet_cli.io.model.checkpoint`.
"""

from glnet_cli.io.model.checkpoint import (  # noqa: F401
    InputScaling, ModelFile, ModelInfo, load_model, read_info, save_model)
