"""Putting a truth on the prediction's grid: what raster and vector truth share.

A truth reader answers one window of the prediction's grid at a time; a truth
must overlap the prediction, and one without a CRS is taken to be on its grid.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import numpy as np
from rasterio._err import CPLE_BaseError  # what GDAL's transformer raises; not re-exported
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from glnet_cli.errors import GlnetWarning, InputError

#: Reads the truth of one window of the prediction's grid as class ids.
TruthReader = Callable[[Window], np.ndarray]


def warn_no_crs(path: str) -> None:
    """Say that a truth or prediction without a CRS is taken to be on the prediction's."""
    warnings.warn(f"{path}: it or the prediction has no CRS; assuming both are on the "
                  "prediction's", GlnetWarning, stacklevel=3)


def check_overlap(path: str, crs: Optional[CRS], bounds: tuple[float, float, float, float],
                  pred: DatasetReader) -> None:
    """Refuse a truth whose bounds (in ``crs``; None: the prediction's) miss the prediction's."""
    if crs is not None:
        try:
            bounds = transform_bounds(crs, pred.crs, *bounds)
        except CPLE_BaseError:
            return  # bounds beyond what one CRS can express in the other: the pixels will tell
    left, bottom, right, top = bounds
    p = pred.bounds
    if left >= p.right or right <= p.left or bottom >= p.top or top <= p.bottom:
        raise InputError(
            f"{path}: does not overlap the prediction {pred.name} (truth bounds "
            f"{left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}; prediction bounds "
            f"{p.left:.6g}, {p.bottom:.6g}, {p.right:.6g}, {p.top:.6g} in {pred.crs})")
