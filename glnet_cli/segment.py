"""The import path the README has always quoted.

The code lives in :mod:`glnet_cli.inference.engine`.
"""

from glnet_cli.inference.engine import (  # noqa: F401
    PlanSummary, SegmentOptions, SegmentResult, Segmenter)
