"""The vector formats ``glnet vectorize`` writes, and the checks made before any work.

Kept free of GDAL imports: ``glnet vectorize --help`` lists these names.
"""

from __future__ import annotations

import os
from typing import Optional

from glnet_cli.errors import InputError
from glnet_cli.io.paths import check_output

#: Output driver by file extension.
DRIVER_BY_EXTENSION = {".shp": "ESRI Shapefile", ".gpkg": "GPKG",
                       ".geojson": "GeoJSON", ".json": "GeoJSON"}
#: Names accepted for ``driver`` (lower case) and the OGR driver each means.
DRIVER_NAMES = {"shapefile": "ESRI Shapefile", "esri shapefile": "ESRI Shapefile",
                "gpkg": "GPKG", "geopackage": "GPKG", "geojson": "GeoJSON"}
#: The files one Shapefile consists of: none may exist without ``overwrite``, and on
#: overwrite those not written again (a stale spatial index) are removed.
SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
LAYOUTS = ("one-layer", "layer-per-class")
#: The format of a mask's output when none is named: what GIS users are sent.
DEFAULT_EXTENSION = ".shp"
#: Longest text a Shapefile (dBASE) field holds, in bytes.
SHAPEFILE_TEXT_BYTES = 254


def resolve_driver(path: str, driver: Optional[str] = None) -> str:
    """The OGR driver for ``path``: ``driver`` when given, else from the extension."""
    if driver is not None:
        try:
            return DRIVER_NAMES[driver.lower()]
        except KeyError:
            raise InputError(f"{driver!r}: not an output format; use one of "
                             f"{', '.join(DRIVER_NAMES)}") from None
    ext = os.path.splitext(path)[1].lower()
    if ext not in DRIVER_BY_EXTENSION:
        raise InputError(f"{path}: cannot tell the format from {ext or 'no extension'!r}; use "
                         f"{', '.join(DRIVER_BY_EXTENSION)} or give --driver")
    return DRIVER_BY_EXTENSION[ext]


def default_output(mask_path: str) -> str:
    """``mask.tif`` -> ``mask.shp``, beside the mask."""
    return os.path.splitext(mask_path)[0] + DEFAULT_EXTENSION


def output_files(path: str, driver: str) -> list[str]:
    """Every file the output consists of: the path, and for a Shapefile its sidecars."""
    if driver != "ESRI Shapefile":
        return [path]
    stem = os.path.splitext(path)[0]
    return [path] + [stem + ext for ext in SHAPEFILE_SIDECARS if ext != ".shp"]


def check_layout(path: str, driver: str, layout: str) -> None:
    """Refuse a layout the format cannot hold."""
    if layout not in LAYOUTS:
        raise InputError(f"{layout!r}: not a layout; use one of {', '.join(LAYOUTS)}")
    if layout == "layer-per-class" and driver != "GPKG":
        raise InputError(f"{path}: a layer per class needs a GeoPackage (.gpkg) output")


def check_vector_output(path: str, driver: str, layout: str, overwrite: bool) -> None:
    """Refuse a bad layout or an existing output (any Shapefile sidecar counts) before work."""
    check_layout(path, driver, layout)
    check_output(path, overwrite, companions=output_files(path, driver)[1:])


def check_field_text(path: str, driver: str, names: dict[int, str]) -> None:
    """Refuse class names a Shapefile would truncate: a cut name is lost data."""
    if driver != "ESRI Shapefile":
        return
    for class_id, name in names.items():
        size = len(name.encode("utf-8"))
        if size > SHAPEFILE_TEXT_BYTES:
            raise InputError(f"{path}: the name of class {class_id} ({name[:20]}...) is {size} "
                             f"bytes long; a Shapefile field holds {SHAPEFILE_TEXT_BYTES}: "
                             "write a .gpkg instead")
