"""What a scene holds, as a plain, JSON-ready dict for ``glnet info``.

Of the pixels only two are read, the first and the last (:func:`read_sample`),
so that a truncated file whose header is intact is not reported as fine.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from typing import Any, Iterator, Optional

import rasterio
from rasterio.crs import CRS

from glnet_cli.errors import GlnetWarning
from glnet_cli.io.raster.read import inspect_scene
from glnet_cli.io.raster.sample import read_sample


def describe_scene(path: str | os.PathLike) -> dict[str, Any]:
    """Size, bands, georeferencing, overviews, masks and tiling of a raster."""
    with no_crs_warning():
        scene = inspect_scene(os.fspath(path))
    with rasterio.open(scene.path) as src:
        colors, dtypes = [c.name for c in src.colorinterp], src.dtypes
        read_sample(src, scene.path)
    t = scene.transform
    return {
        "kind": "scene", "path": scene.path, "width": scene.width, "height": scene.height,
        "count": scene.count,
        "bands": [{"band": b, "dtype": dtypes[b - 1], "color": colors[b - 1],
                   "mask_flags": flags.split(",")}
                  for b, flags in zip(scene.bands, scene.mask_flags)],
        "crs": crs_name(scene.crs),
        "units": scene.crs.units_factor[0] if scene.crs else None,
        "transform": list(t)[:6],
        # Lengths of the pixel's sides, so that a rotated grid reports its true size.
        "pixel_size": [math.hypot(t.a, t.d), math.hypot(t.b, t.e)],
        "gsd": scene.gsd, "overviews": list(scene.overviews), "nodata": _json_number(scene.nodata),
        "block_shape": list(scene.block_shape),
    }


def crs_name(crs: Optional[CRS]) -> Optional[str]:
    """``EPSG:n`` when the CRS has a code, else the name its WKT gives it."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    wkt = crs.to_wkt()
    match = re.match(r'\s*\w+\["([^"]*)"', wkt)
    return match.group(1) if match else wkt


@contextlib.contextmanager
def no_crs_warning() -> Iterator[None]:
    """For reports: a missing CRS shows as crs None; segment's warning about it is noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GlnetWarning)
        yield


def _json_number(value: Optional[float]) -> Optional[float | str]:
    """NaN and infinities as strings ("nan"), which strict JSON readers accept."""
    if value is not None and not math.isfinite(value):
        return str(value)
    return value
