"""Reproject many geometries at once, leaving out those a CRS cannot hold.

Some vertices have no place in the target CRS: a geostationary (GOES) pixel
that looks past the edge of the Earth, or projected metres misread as
degrees. GDAL then fails the whole batch. Here the batch is split in halves
until the geometries that fail are found, so one bad polygon costs a few
extra calls instead of the run; callers count what was left out and say so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio.warp
import shapely
from rasterio._err import CPLE_BaseError  # what GDAL's transformer raises; not re-exported

#: Geometries reprojected in one call to GDAL.
_BATCH = 100_000


def reproject_geometries(geoms: np.ndarray, src_crs: Any, dst_crs: Any) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """Move ``geoms`` (a shapely array) from ``src_crs`` to ``dst_crs``, vertex by vertex.

    Returns:
        The reprojected geometries that could be (2D), and a boolean mask over
        ``geoms`` of those kept.
    """
    geoms = shapely.force_2d(np.asarray(geoms, dtype=object))
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    # starts[i]: index of geometry i's first vertex in coords
    starts = np.searchsorted(owner, np.arange(len(geoms) + 1))
    moved = coords.copy()  # geometries left out keep theirs, which are dropped anyway
    kept = np.ones(len(geoms), dtype=bool)

    def move(lo: int, hi: int) -> None:
        part = slice(starts[lo], starts[hi])
        xy = _transform(src_crs, dst_crs, coords[part])
        if xy is not None:
            moved[part] = xy
            bad = owner[part][~np.isfinite(xy).all(axis=1)]
            kept[bad] = False
        elif hi - lo == 1:
            kept[lo] = False
        else:
            mid = (lo + hi) // 2
            move(lo, mid)
            move(mid, hi)

    for lo in range(0, len(geoms), _BATCH):
        if starts[lo] < starts[min(lo + _BATCH, len(geoms))]:
            move(lo, min(lo + _BATCH, len(geoms)))
    out = shapely.set_coordinates(geoms.copy(), moved)
    return out[kept], kept


def _transform(src_crs: Any, dst_crs: Any, coords: np.ndarray) -> np.ndarray | None:
    """``coords`` in ``dst_crs``, or None when GDAL cannot transform one of them."""
    try:
        xs, ys = rasterio.warp.transform(src_crs, dst_crs, coords[:, 0], coords[:, 1])
    except CPLE_BaseError:
        return None
    return np.column_stack([xs, ys])
