"""The import path the README has always quoted.

The code lives in :mod:`glnet_cli.inference.engine` and :mod:`glnet_cli.inference.estimate`.
"""

from glnet_cli.inference.engine import SegmentOptions, SegmentResult, Segmenter  # noqa: F401
from glnet_cli.inference.estimate import PlanSummary  # noqa: F401
