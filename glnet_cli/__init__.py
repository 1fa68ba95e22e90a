"""glnet: GLNet segmentation of ultra-high-resolution GeoTIFFs.

The Python API is exported here, lazily (PEP 562): ``from glnet_cli import
Segmenter`` imports the inference room (and torch) then, so ``import glnet_cli``
and ``glnet --help`` stay quick and load no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that holds it.
_EXPORTS = {
    **dict.fromkeys(("Segmenter", "SegmentResult"), "glnet_cli.inference.engine"),
    "SegmentOptions": "glnet_cli.inference.segment_options",
    "PlanSummary": "glnet_cli.inference.estimate",
    **dict.fromkeys(("train", "TrainConfig", "TrainResult"), "glnet_cli.training.train"),
    **dict.fromkeys(("vectorize", "VectorizeSummary"), "glnet_cli.vector.vectorize"),
    **dict.fromkeys(("evaluate", "EvaluationResult"), "glnet_cli.evaluation.evaluate"),
    **dict.fromkeys(("load_model", "save_model", "read_info", "ModelFile", "ModelInfo",
                     "InputScaling"), "glnet_cli.io.model.checkpoint"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the module holding ``name`` on first use, and keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
