"""Polygon output with fiona: formats, Shapefile sidecars, reprojection, safe replacement.

The vectoriser hands finished polygons here as they come, so none wait in
memory. Everything is written into a hidden temp folder beside the output and
moved into place only when complete: a failed run leaves no half-written
Shapefile, GeoPackage or GeoJSON behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import warnings
from typing import Any, Optional, Sequence

import fiona
import fiona.meta
import numpy as np
from fiona.transform import transform_geom
from rasterio.crs import CRS
from rasterio.errors import CRSError
from shapely.geometry import mapping

from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.paths import check_output

log = logging.getLogger(__name__)

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
#: RFC 7946: GeoJSON is always WGS84 longitude/latitude.
WGS84 = "EPSG:4326"

_FIELDS = {"class_id": "int", "class_name": "str", "area": "float", "perimeter": "float"}


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


def output_files(path: str, driver: str) -> list[str]:
    """Every file the output consists of: the path, and for a Shapefile its sidecars."""
    if driver != "ESRI Shapefile":
        return [path]
    stem = os.path.splitext(path)[0]
    return [path] + [stem + ext for ext in SHAPEFILE_SIDECARS if ext != ".shp"]


def check_vector_output(path: str, driver: str, layout: str, overwrite: bool) -> None:
    """Refuse a bad layout or an existing output (any Shapefile sidecar counts) before work."""
    if layout not in LAYOUTS:
        raise InputError(f"{layout!r}: not a layout; use one of {', '.join(LAYOUTS)}")
    if layout == "layer-per-class" and driver != "GPKG":
        raise InputError(f"{path}: a layer per class needs a GeoPackage (.gpkg) output")
    check_output(path, overwrite, companions=output_files(path, driver)[1:])


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


class VectorWriter:
    """Streams polygons into one layer, or one layer per class, of a new file.

    Args:
        path: the final output file.
        driver: an OGR driver from :func:`resolve_driver`.
        crs: WKT of the geometries' CRS, or None when the mask has none.
        to_crs: WKT/EPSG of the output CRS when it differs from ``crs``.
        layout: ``one-layer``, or ``layer-per-class`` (GeoPackage only).
        geometry_type: ``Polygon`` or ``MultiPolygon``.
    """

    def __init__(self, path: str, driver: str, crs: Optional[str], to_crs: Optional[str],
                 layout: str = "one-layer", geometry_type: str = "Polygon") -> None:
        self.path = os.fspath(path)
        self.driver = driver
        self.src_crs = crs
        self.to_crs = to_crs
        self.layout = layout
        self.schema = {"geometry": geometry_type, "properties": dict(_FIELDS)}
        self.layers: list[str] = []
        #: GeoPackage layer name for one layer (or an empty result): the file's stem.
        self._stem_layer = _layer_name(os.path.splitext(self.path)[0])
        self._class_names: dict[int, str] = {}
        self._tmpdir = ""
        self._sink: Any = None

    def __enter__(self) -> "VectorWriter":
        folder = os.path.dirname(os.path.abspath(self.path))
        name = os.path.basename(self.path)
        self._tmpdir = tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=folder)
        if self.layout == "layer-per-class":
            # One layer per class without holding features: stage them in one layer,
            # split by class at the end (OGR refuses two writers on one GeoPackage).
            self._sink = self._open(os.path.join(self._tmpdir, ".staging.gpkg"), "GPKG",
                                    "staging")
        else:
            layer = self._stem_layer if self.driver == "GPKG" else None
            self._sink = self._open(os.path.join(self._tmpdir, name), self.driver, layer)
            self.layers.append(self._sink.name)
        return self

    def _open(self, path: str, driver: str, layer: Optional[str] = None) -> Any:
        options = {}
        if driver == "GeoJSON" and "RFC7946" in fiona.meta.layer_creation_options(driver):
            options["RFC7946"] = "YES"
        crs = self.to_crs or self.src_crs
        return fiona.open(path, "w", driver=driver, schema=self.schema, layer=layer,
                          **({"crs": crs} if crs else {}), **options)

    def write(self, geoms: Sequence[Any], class_id: int, class_name: str,
              areas: np.ndarray, perimeters: np.ndarray) -> None:
        """Write polygons of one class, with their area and perimeter in the mask's CRS."""
        shapes = [mapping(g) for g in geoms]
        if self.to_crs:
            shapes = transform_geom(self.src_crs, self.to_crs, shapes)
        self._class_names[class_id] = class_name
        self._sink.writerecords(
            {"geometry": shape, "properties": {"class_id": class_id, "class_name": class_name,
                                               "area": float(a), "perimeter": float(p)}}
            for shape, a, p in zip(shapes, areas, perimeters))

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            self._sink.close()
            if exc_type is None:
                if self.layout == "layer-per-class":
                    self._split_by_class()
                self._publish()
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _split_by_class(self) -> None:
        """Copy the staged features into one GeoPackage layer per class (an empty one if none)."""
        target = os.path.join(self._tmpdir, os.path.basename(self.path))
        if not self._class_names:
            self._open(target, "GPKG", self._stem_layer).close()
            self.layers.append(self._stem_layer)
            return
        with fiona.open(self._sink.path) as staged:
            for class_id, class_name in sorted(self._class_names.items()):
                layer = _layer_name(class_name)
                if layer in self.layers:
                    layer = f"{layer}_{class_id}"
                with self._open(target, "GPKG", layer) as out:
                    out.writerecords(staged.filter(where=f"class_id = {class_id}"))
                self.layers.append(layer)

    def _publish(self) -> None:
        """Move every finished file into place; drop stale sidecars of a replaced Shapefile."""
        folder = os.path.dirname(os.path.abspath(self.path))
        written = [f for f in os.listdir(self._tmpdir) if not f.startswith(".staging")]
        for name in written:
            os.replace(os.path.join(self._tmpdir, name), os.path.join(folder, name))
        for stale in output_files(self.path, self.driver):
            if os.path.basename(stale) not in written:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
        log.info("wrote %s (%s, layers: %s)", self.path, self.driver, ", ".join(self.layers))


def _layer_name(name: str) -> str:
    """A layer name safe in every GIS: letters, digits and underscores."""
    return re.sub(r"\W+", "_", os.path.basename(name)).strip("_") or "polygons"

