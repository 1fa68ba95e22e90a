"""How to run the network: the library's defaults, which ``glnet segment`` shows and uses.

Torch-free, so that the command reads its option defaults from here without
slowing ``--help``: each default is written once, and the Python API and the
CLI write the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional, Sequence


@dataclass(frozen=True)
class SegmentOptions:
    """How to run the network; one set serves every scene of a batch."""

    #: 2 or 3; None: the highest the model has.
    stage: Optional[int] = None
    #: Crops per forward pass; None: the most the memory budget allows (up to 6).
    batch_size: Optional[int] = None
    #: Least overlap between neighbouring crops; None: 64 px, or a quarter of a small crop.
    overlap: Optional[int] = None
    #: fp32, fp16, bf16, or auto: what the device computes fastest (see resolve_precision).
    precision: str = "auto"
    bands: Optional[Sequence[int]] = None
    #: The scenes' nodata value when their files declare none (``--nodata``).
    nodata: Optional[float] = None

    def resolved(self, overlap: int, batch_size: int) -> ResolvedSegmentOptions:
        """These options, with the overlap and batch size a segmenter chose for its model."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return ResolvedSegmentOptions(**{**given, "overlap": overlap, "batch_size": batch_size})


@dataclass(frozen=True)
class ResolvedSegmentOptions(SegmentOptions):
    """The options a :class:`~glnet_cli.inference.engine.Segmenter` runs with: none unset
    that its model and device decide."""

    batch_size: int = field(kw_only=True)
    overlap: int = field(kw_only=True)
