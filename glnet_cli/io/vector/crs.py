"""The CRS polygons are written in: checked before any work, and polygons moved into it.

Shared by both polygon outputs (files through fiona, GeoJSON text to a
stream). Polygons that cannot be reprojected to the output's CRS (a
geostationary pixel in space has no longitude) are left out and counted.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError

from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.io.vector.reproject import reproject_geometries

#: RFC 7946: GeoJSON is always WGS84 longitude/latitude.
WGS84 = "EPSG:4326"


def output_crs(path: str, crs: Optional[CRS], driver: str,
               to_crs: Optional[str]) -> Optional[CRS]:
    """The output's CRS (None: the mask's own), checked before any work; warn where the
    mask's CRS makes areas surprising (none, or geographic)."""
    if driver == "GeoJSON":
        if to_crs is not None and _parse_crs(to_crs) != _parse_crs(WGS84):
            raise InputError(f"{to_crs}: GeoJSON is always written in {WGS84} (RFC 7946); "
                             "write a .gpkg or .shp for another CRS")
        to_crs = WGS84
    if crs is None:
        if to_crs is not None:
            raise RasterError(f"{path}: has no CRS, so it cannot be reprojected to {to_crs}; "
                              "set one with gdal_edit.py -a_srs EPSG:XXXX")
        warnings.warn(f"{path}: has no CRS; the output has none, and area and perimeter "
                      "are in the units of its geotransform", GlnetWarning, stacklevel=3)
        return None
    if crs.is_geographic:
        warnings.warn(f"{path}: has a geographic CRS, so area is in square degrees and "
                      "perimeter in degrees", GlnetWarning, stacklevel=3)
    target = _parse_crs(to_crs) if to_crs else crs
    return None if target == crs else target


def _parse_crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except CRSError:
        raise InputError(f"{text}: not a CRS GDAL knows (try EPSG:4326)") from None


class PolygonSink:
    """What both writers share: reprojection, with the polygons it cannot place counted."""

    def __init__(self, crs: Optional[str], to_crs: Optional[str]) -> None:
        self.src_crs = crs
        self.to_crs = to_crs
        self.layers: list[str] = []
        #: Polygons left out because the output's CRS cannot hold them.
        self.unprojectable = 0

    def _reproject(self, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.to_crs:
            return geoms, np.ones(len(geoms), dtype=bool)
        moved, kept = reproject_geometries(geoms, self.src_crs, self.to_crs)
        self.unprojectable += int(np.count_nonzero(~kept))
        return moved, kept
