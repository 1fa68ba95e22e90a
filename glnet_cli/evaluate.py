"""The import path the README has always quoted.

The code lives in :mod:`glnet_cli.evaluation.evaluate`.
"""

from glnet_cli.evaluation.evaluate import (  # noqa: F401
    EvaluationResult, evaluate)
