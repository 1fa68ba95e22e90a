"""The import path the README has always quoted.

The code lives in :mod:`glnet_cli.vector.vectorize`.
"""

from glnet_cli.vector.vectorize import (  # noqa: F401
    VectorizeSummary, vectorize)
