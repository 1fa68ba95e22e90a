"""Small helpers for tests: write tiny GeoTIFFs with known content."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import rasterio
from rasterio.transform import Affine

#: A UTM-like grid: 0.5 m pixels, north-up.
DEFAULT_TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0)
DEFAULT_CRS = "EPSG:32616"


def write_raster(path: Path | str, array: np.ndarray, transform: Affine = DEFAULT_TRANSFORM,
                 crs: Optional[str] = DEFAULT_CRS, nodata: Optional[float] = None,
                 tiled: bool = False, **profile) -> Path:
    """Write (bands, H, W) or (H, W) ``array`` as a GeoTIFF and return its path."""
    if array.ndim == 2:
        array = array[None]
    meta = dict(driver="GTiff", width=array.shape[2], height=array.shape[1],
                count=array.shape[0], dtype=array.dtype, transform=transform, nodata=nodata)
    if crs is not None:
        meta["crs"] = crs
    if tiled:
        meta.update(tiled=True, blockxsize=16, blockysize=16)
    meta.update(profile)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(array)
    return Path(path)
